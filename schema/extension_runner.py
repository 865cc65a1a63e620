"""strawberry's extension runner with the per-request plumbing taken out.

strawberry wraps every hook of every extension anew on each operation: for each of the four stages (operation,
parsing, validation, execution) an ExtensionContextManager looks the hook up, decorates it with
contextlib.contextmanager (functools.wraps and all) and enters it through an ExitStack, also for the stages no
extension hooks into. That was ~8% of the CPU of a small query (`{ me { id email roles } }`).

Here a hook is looked up and decorated once per extension class; a stage no extension hooks into gets a shared
no-op context, a stage with one hook that hook's context manager directly. A stage with several hooks (or a hook
strawberry wraps differently: a plain function) keeps strawberry's own context manager. Same hooks, same order,
same exception semantics (contextlib's generator context managers either way)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.extensions.context import (
    ExecutingContextManager,
    ExtensionContextManagerBase,
    OperationContextManager,
    ParsingContextManager,
    ValidationContextManager,
)
from strawberry.extensions.runner import SchemaExtensionsRunner

# (extension class, hook name) -> None (no hook), (factory, is_async), or False (not handled here: strawberry's)
_WRAPPED: dict[tuple[type, str], tuple[Callable[[Any], Any], bool] | None | bool] = {}


def _wrapped(cls: type, name: str) -> tuple[Callable[[Any], Any], bool] | None | bool:
    key = (cls, name)
    try:
        return _WRAPPED[key]
    except KeyError:
        pass
    hook = getattr(cls, name)
    wrapped: tuple[Callable[[Any], Any], bool] | None | bool
    if hook is getattr(SchemaExtension, name):
        wrapped = None
    elif inspect.isgeneratorfunction(hook):
        wrapped = (contextlib.contextmanager(hook), False)
    elif inspect.isasyncgenfunction(hook):
        wrapped = (contextlib.asynccontextmanager(hook), True)
    else:
        wrapped = False
    _WRAPPED[key] = wrapped
    return wrapped


class _NoHook:
    """A stage no extension hooks into."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_NO_HOOK = _NoHook()


class _OneHook:
    """A stage one extension hooks into: its context manager, entered with `with` (a sync hook, as strawberry's
    sync execution requires) or `async with` (either kind)."""

    __slots__ = ("cm", "extension", "hook", "is_async")

    def __init__(self, cm: Any, is_async: bool, extension: SchemaExtension, hook: str) -> None:
        self.cm, self.is_async, self.extension, self.hook = cm, is_async, extension, hook

    def __enter__(self) -> None:
        if self.is_async:
            stage = f"{self.extension}.{self.hook}"  # built here: formatting the extension costs on every operation
            raise RuntimeError(f"SchemaExtension hook {stage} failed to complete synchronously.")
        self.cm.__enter__()

    def __exit__(self, *exc: Any) -> bool:
        return bool(self.cm.__exit__(*exc))

    async def __aenter__(self) -> None:
        if self.is_async:
            await self.cm.__aenter__()
        else:
            self.cm.__enter__()

    async def __aexit__(self, *exc: Any) -> bool:
        if self.is_async:
            return bool(await self.cm.__aexit__(*exc))
        return bool(self.cm.__exit__(*exc))


class LeanExtensionsRunner(SchemaExtensionsRunner):
    def _stage(self, manager: type[ExtensionContextManagerBase]) -> Any:
        name = manager.HOOK_NAME
        found: tuple[Callable[[Any], Any], bool, SchemaExtension] | None = None
        for extension in self.extensions:
            wrapped = _wrapped(type(extension), name)
            if wrapped is None:
                continue
            if not isinstance(wrapped, tuple) or found is not None:
                return manager(self.extensions)  # several hooks, or one strawberry wraps its own way
            found = (*wrapped, extension)
        if found is None:
            return _NO_HOOK
        factory, is_async, hooked = found
        return _OneHook(factory(hooked), is_async, hooked, name)

    async def get_extensions_results(self, ctx: Any) -> dict[str, Any]:
        """strawberry's, without an await_maybe coroutine per extension."""
        data: dict[str, Any] = {}
        for extension in self.extensions:
            results = extension.get_results()
            if inspect.isawaitable(results):
                results = await results
            data.update(results)
        data.update(ctx.extensions_results)
        return data

    def operation(self) -> Any:
        return self._stage(OperationContextManager)

    def validation(self) -> Any:
        return self._stage(ValidationContextManager)

    def parsing(self) -> Any:
        return self._stage(ParsingContextManager)

    def executing(self) -> Any:
        return self._stage(ExecutingContextManager)
