"""The split latent-diffusion backbone of MEG-v0 (torch, diffusers): model, merging, training, profile."""
