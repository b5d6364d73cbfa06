"""Pictures of runs and models: training curves (`charlm plot`)."""
