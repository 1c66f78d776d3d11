"""Option groups written as a YAML mapping (``speech:``, ``call:``) and held as a dataclass."""

from dataclasses import asdict


class YamlOptions:
    """Mixin of an options dataclass: ``coerce`` builds it from None (the defaults), a dict (a
    YAML mapping: unknown keys are an error naming them) or an instance; ``to_dict`` writes it
    back. ``WHAT`` names the group in the messages."""

    WHAT = "options"

    @classmethod
    def coerce(cls, value):
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise ValueError(f"{cls.WHAT}: unknown keys {sorted(unknown)}")
            return cls(**value)
        raise TypeError(f"{cls.WHAT} must be a {cls.__name__} or a dict, got {type(value).__name__}")

    def to_dict(self):
        return asdict(self)
