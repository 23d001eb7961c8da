"""Training: the plain train step, and the Lightning shell (DDP, precision, checkpoints, logging)."""
