"""strawberry's extension runner with the per-request plumbing taken out.

strawberry wraps every hook of every extension anew on each operation: for each of the four stages (operation,
parsing, validation, execution) an ExtensionContextManager looks the hook up, decorates it with
contextlib.contextmanager (functools.wraps and all) and enters it through an ExitStack, also for the stages no
extension hooks into. That was ~8% of the CPU of a small query (`{ me { id email roles } }`).

Here a hook is looked up and decorated once per extension class; a stage no extension hooks into gets a shared
no-op context, a stage with one hook that hook's generator driven directly (contextlib's steps without its context
manager object: _OneHook). A stage with several hooks (or a hook strawberry wraps differently: a plain function)
keeps strawberry's own context manager. Same hooks, same order, same exception semantics (an exception leaving
the stage goes through contextlib's own __exit__/__aexit__)."""

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

# (extension class, hook name) -> None (no hook), (hook, is_async), or False (not handled here: strawberry's)
_WRAPPED: dict[tuple[type, str], tuple[Callable[[Any], Any], bool] | None | bool] = {}
_SYNC_EXIT = contextlib._GeneratorContextManager.__exit__  # only reads .gen (the hook's generator)
_ASYNC_EXIT = contextlib._AsyncGeneratorContextManager.__aexit__  # only reads .gen


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
        wrapped = (hook, False)
    elif inspect.isasyncgenfunction(hook):
        wrapped = (hook, True)
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
    """A stage one extension hooks into: its hook's generator, entered with `with` (a sync hook, as strawberry's
    sync execution requires) or `async with` (either kind). Entering and a clean exit take contextlib's steps for a
    generator context manager (its errors included); an exception leaving the stage goes through contextlib's own
    __exit__/__aexit__, which read only `gen`."""

    __slots__ = ("extension", "gen", "hook", "is_async")

    def __init__(self, gen: Any, is_async: bool, extension: SchemaExtension, hook: str) -> None:
        self.gen, self.is_async, self.extension, self.hook = gen, is_async, extension, hook

    def __enter__(self) -> None:
        if self.is_async:
            stage = f"{self.extension}.{self.hook}"  # built here: formatting the extension costs on every operation
            raise RuntimeError(f"SchemaExtension hook {stage} failed to complete synchronously.")
        try:
            next(self.gen)
        except StopIteration:
            raise RuntimeError("generator didn't yield") from None

    def __exit__(self, typ: Any, value: Any, traceback: Any) -> bool:
        if typ is not None:
            return bool(_SYNC_EXIT(self, typ, value, traceback))  # type: ignore[arg-type]  # reads self.gen only
        try:
            next(self.gen)
        except StopIteration:
            return False
        try:
            raise RuntimeError("generator didn't stop")
        finally:
            self.gen.close()

    async def __aenter__(self) -> None:
        if not self.is_async:
            self.__enter__()
            return
        try:
            await anext(self.gen)
        except StopAsyncIteration:
            raise RuntimeError("generator didn't yield") from None

    async def __aexit__(self, typ: Any, value: Any, traceback: Any) -> bool:
        if not self.is_async:
            return self.__exit__(typ, value, traceback)
        if typ is not None:
            return bool(await _ASYNC_EXIT(self, typ, value, traceback))  # type: ignore[arg-type]  # reads self.gen only
        try:
            await anext(self.gen)
        except StopAsyncIteration:
            return False
        try:
            raise RuntimeError("generator didn't stop")
        finally:
            await self.gen.aclose()


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
        hook, is_async, hooked = found
        return _OneHook(hook(hooked), is_async, hooked, name)

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
