"""The real models the envs stand on: FLOP counts of large architectures and small live backends."""
