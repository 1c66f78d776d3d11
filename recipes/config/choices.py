"""One check for the options that take one of a few named values (losses, heads, ordinal ages)."""


def check_choice(option, value, allowed):
    """``value`` if it is one of ``allowed``, else a ValueError naming the option and the choices."""
    if value not in allowed:
        raise ValueError(f"{option}: unknown value {value!r} (use one of {', '.join(map(str, allowed))})")
    return value
