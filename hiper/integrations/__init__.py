"""Drop-ins for trainers built like the authors' (verl / verl-agent batches)."""
