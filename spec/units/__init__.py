"""Each unit kind's EXEC contract (function codes, argument layout, checks), below both the
RTL that executes it and the compiler that emits it."""
