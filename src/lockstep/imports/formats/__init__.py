"""Statement formats other than delimited text, each turned into rows of
:data:`lockstep.imports.source.CANONICAL`: ``parse(data: bytes) -> (rows, account,
currency)``. Each module says which parser it uses and why."""
