"""One registry helper: named classes of one kind (neural families, feedback designs),
registered once by a decorator and looked up with a one-line error naming what exists."""
from __future__ import annotations


class Registry(dict):
    """name -> class. `@REG.register("name")` sets cls.name; registering a name that
    exists under another class is an error naming both (a plug-in cannot take over a
    built-in's name); `REG.get_class(name)` raises ValueError listing the allowed names."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str):
        def deco(cls):
            old = self.get(name)
            if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
                raise ValueError(f"{self.kind} {name!r} is registered twice: {old.__module__}.{old.__qualname__} "
                                 f"and {cls.__module__}.{cls.__qualname__}")
            cls.name = name
            self[name] = cls
            return cls
        return deco

    def get_class(self, name: str) -> type:
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self)}")
        return self[name]
