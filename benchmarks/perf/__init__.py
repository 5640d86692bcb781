"""Speed measurements (executors, training-step options, DynaFed synthesis) that print numbers."""
