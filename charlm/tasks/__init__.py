"""The kinds of model charlm trains, a folder each (`lm/`, `tagging/`, `classify/`): a task's reader, its
training hooks (a `charlm.training.task.Task`), its inference and its metrics. `registry` names them."""
