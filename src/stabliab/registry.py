"""One registry helper: named classes of one kind (neural families, feedback designs),
registered once by a decorator and looked up with a one-line error naming what exists."""
from __future__ import annotations


class Registry(dict):
    """name -> class. `@REG.register("name")` sets cls.name; registering a name that
    exists under another class is an error naming both (a plug-in cannot take over a
    built-in's name, nor one of another plug-in's), by the decorator or by item
    assignment alike, and no name is ever removed; `REG.get_class(name)` raises
    ValueError listing the allowed names. The same class registered again (a module
    imported anew, as every sweep worker does) is no conflict."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def __setitem__(self, name: str, cls) -> None:
        old = self.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"{self.kind} {name!r} is registered twice: {old.__module__}.{old.__qualname__} "
                             f"and {cls.__module__}.{cls.__qualname__}")
        super().__setitem__(name, cls)

    def _refuse(self, *args, **kwargs):
        raise TypeError(f"{self.kind}s are registered once and never removed or replaced in bulk")

    __delitem__ = pop = popitem = clear = update = setdefault = __ior__ = _refuse

    def register(self, name: str):
        def deco(cls):
            self[name] = cls  # refuses a second class under an existing name
            cls.name = name
            return cls
        return deco

    def get_class(self, name: str) -> type:
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self)}")
        return self[name]
