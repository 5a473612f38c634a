"""Diagnostics for operators: why an outbox row waits (`why`), a synthetic outcome through the
running daemon (`testoutcome`), live traffic captured with secrets masked (`capture`) and played
back offline (`replay`). The CLI commands are in `telephonyd.cli.diagnostics`."""
