"""Training: data from the store, the loop, optimizers and schedules, losses, checkpoints, logs."""
