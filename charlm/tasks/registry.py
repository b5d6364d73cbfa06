"""The tasks charlm trains, by name, and the one entry point that trains any of them.

`TASKS` maps a `--task` name to its `charlm.training.task.Task` class; the kind of model each trains is its
network's (`charlm.models.networks`). Adding a task is a folder under `charlm/tasks/` and one line here (or a
`register_task` call, as the tests do).
"""

import time

from charlm.errors import ConfigError
from charlm.store.rundir import RunDir
from charlm.tasks.classify.classify_task import ClassifierTask
from charlm.tasks.lm.lm_task import LanguageModelTask
from charlm.tasks.pretraining import pretrained, with_pretraining
from charlm.tasks.tagging.tagged_text import TASKS as TAGGING_TASKS
from charlm.tasks.tagging.tagging_task import TaggingTask
from charlm.tasks.translate.translate_task import TranslateTask
from charlm.training.events import TrainResult
from charlm.training.options import TrainOptions, check_options, with_time_budget
from charlm.training.signals import StopSignals
from charlm.training.task import Task
from charlm.training.trainer import Trainer

TASKS: dict[str, type[Task]] = {
    "lm": LanguageModelTask,
    **{name: TaggingTask for name in TAGGING_TASKS},
    "classify": ClassifierTask,
    "translate": TranslateTask,
}


def register_task(name: str, task: type[Task]) -> None:
    """Make `task` trainable as `TrainOptions(task=name)`."""
    TASKS[name] = task


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


def checked_options(opts: TrainOptions, explicit: frozenset) -> TrainOptions:
    """The options as given, checked: flags of another task are usage errors, and a run with no stopping rule
    gets the default time budget. The recipe fills the rest once the data is read."""
    task_class(opts.task).check_options(opts, explicit)
    opts = with_time_budget(opts)
    check_options(opts)
    return with_pretraining(opts)


def open_trainer(opts: TrainOptions, run_dir: RunDir, *, explicit: frozenset = frozenset(), report=None,
                 clock=time.perf_counter) -> Trainer:
    """Load what `opts` start from (data, a run to resume, a checkpoint to fine-tune) and build the trainer."""
    report = report or _ignore
    task = task_class(opts.task).open(opts, run_dir, explicit=explicit, report=report)
    return Trainer(task, run_dir, report=report, clock=clock)


def train(opts: TrainOptions, *, explicit: frozenset = frozenset(), report=None,
          clock=time.perf_counter, started: float | None = None) -> TrainResult:
    """Run (or resume) the training job `opts` describe, of any task.

    explicit: names of options the user set on the command line (a resume refuses to change the
    architecture and keeps the checkpoint's training options unless they were given explicitly).
    report: called with each event of `charlm.training.events`; None is silent.
    clock: seconds for the time budget and the speed figures (time.perf_counter).
    started: the clock's reading when the invocation began (`charlm train`: before its imports); the time
    budget counts from it. Default: now.
    """
    started = clock() if started is None else started
    opts = checked_options(opts, explicit)
    if opts.pretrain:
        opts, explicit = pretrained(opts, explicit, train=train, report=report or _ignore, clock=clock,
                                    started=started)
    with RunDir(opts.run_dir, keep=opts.keep) as run_dir:
        trainer = open_trainer(opts, run_dir, explicit=explicit, report=report, clock=clock)
        with StopSignals() as stop:
            return trainer.loop(stop, started=started)


def _ignore(event) -> None:
    pass
