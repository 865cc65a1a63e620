"""No schema hints in errors when introspection is off.

graphql-core appends "Did you mean ...?" (field, argument, type, enum value and input field names taken from the
schema) to validation errors and to variable coercion errors; with introspection disabled that would still let a
client enumerate the schema one typo at a time. graphql-core 3.3 can omit them (`hide_suggestions`), but strawberry
0.341 never asks it to, so:

- validation: `HideSuggestions` goes first in the rule list; it switches the ValidationContext every later rule
  reads (`context.hide_suggestions`) before any rule visits the document;
- execution (variable coercion, enum values, subscriptions too): `without_suggestions(executor)` builds every
  executor with `hide_suggestions=True`.

Both sit on the schema, so every transport (HTTP, graphql-transport-ws) gets them."""

from __future__ import annotations

from typing import Any

from graphql.validation import ASTValidationRule, ValidationContext


class HideSuggestions(ASTValidationRule):
    """Not a check: makes the validation run it belongs to omit suggestions (must be the first rule)."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        context._hide_suggestions = True  # graphql-core 3.3 reads this attribute through `hide_suggestions`


def without_suggestions(executor_class: type[Any]) -> type[Any]:
    """A subclass of `executor_class` (a graphql-core Executor) whose executors never add suggestions."""

    class NoSuggestionsExecutor(executor_class):
        @classmethod
        def build(cls, *args: Any, **kwargs: Any) -> Any:
            kwargs["hide_suggestions"] = True
            return super().build(*args, **kwargs)

    NoSuggestionsExecutor.__name__ = f"NoSuggestions{executor_class.__name__}"
    return NoSuggestionsExecutor
