"""The ``gora`` command (``cli.main``) and the HTTP client the people's commands use (``cli.client``)."""
