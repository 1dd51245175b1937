"""Quality benchmark: GoRA against LoRA and PEFT's peers on R8 (MiniLM) and arithmetic (SmolLM2).

Not part of ``make test``. See docs/benchmarks.md for the table and how to rerun each row.
"""
