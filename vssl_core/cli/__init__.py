"""One module per command of ``python -m vssl_core``; each exposes ``main(argv) -> int``."""
