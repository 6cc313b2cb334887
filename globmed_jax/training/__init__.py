"""Supervised fine-tuning: optimizer, loss, jitted sharded train step, checkpoints, metrics, loop."""
