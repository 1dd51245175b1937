"""Training data: the JSONL formats users bring (torch-free) and their encoding for the trainer."""
