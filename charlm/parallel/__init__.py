"""Data-parallel training over MPI ranks: launch, the rank's streams, the gradient Allreduce, collective stops."""
