"""Generated operations for the fuzz gate: hypothesis-graphql documents over the live schema (one root field, or
several), then sent either with their arguments as literals or hoisted into JSON variables, which reach the scalars'
`parse_value` instead of `parse_literal`, carry values no literal can (Infinity, huge numbers) and send `Upload`
arguments as real multipart files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import graphql
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries

from tests.fuzz.scalars import Pools, scalar_strategies

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n"
FILES = st.tuples(
    st.sampled_from(["prospectus.pdf", "a.txt", "../../etc/passwd", "", "x" * 300 + ".pdf", "\u202e.pdf"]),
    st.one_of(st.sampled_from([PDF, b"", b"MZ\x90\x00", b"hello,world\n", b"\x89PNG\r\n\x1a\n"]),
              st.binary(max_size=256)),
    st.sampled_from(["application/pdf", "text/plain", "text/csv", "image/png", "application/x-msdownload",
                     "application/octet-stream"]),
)


@dataclass
class Operation:
    query: str
    variables: dict[str, Any] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)  # variable name -> (filename, bytes, type)

    def describe(self) -> str:
        files = {k: (f[0], len(f[1]), f[2]) for k, f in self.files.items()}
        return f"query: {self.query}\nvariables: {self.variables!r}"[:4000] + (f"\nfiles: {files}" if files else "")


def _named(type_: graphql.GraphQLType) -> graphql.GraphQLNamedType:
    while isinstance(type_, graphql.GraphQLWrappingType):
        type_ = type_.of_type
    return type_  # type: ignore[return-value]


def hoist(schema: graphql.GraphQLSchema, document: graphql.DocumentNode,
          files: list[tuple[str, bytes, str]]) -> Operation:
    """The same operation with every root field argument passed as a variable of the argument's declared type."""
    op = document.definitions[0]
    assert isinstance(op, graphql.OperationDefinitionNode)
    root = schema.get_root_type(op.operation)
    assert root is not None
    definitions: list[graphql.VariableDefinitionNode] = []
    variables: dict[str, Any] = {}
    uploads: dict[str, tuple[str, bytes, str]] = {}
    selections = []
    for selection in op.selection_set.selections:
        assert isinstance(selection, graphql.FieldNode)
        field_def = root.fields[selection.name.value]
        arguments = []
        for argument in selection.arguments or ():
            arg_def = field_def.args[argument.name.value]
            name = graphql.NameNode(value=f"v{len(definitions)}")
            definitions.append(graphql.VariableDefinitionNode(
                variable=graphql.VariableNode(name=name), type=graphql.parse_type(str(arg_def.type)), directives=()))
            if _named(arg_def.type).name == "Upload" and isinstance(arg_def.type, graphql.GraphQLNonNull) and files:
                variables[name.value] = None
                uploads[name.value] = files[len(uploads) % len(files)]
            else:
                variables[name.value] = graphql.value_from_ast_untyped(argument.value)
            arguments.append(graphql.ArgumentNode(name=argument.name, value=graphql.VariableNode(name=name)))
        selections.append(graphql.FieldNode(alias=selection.alias, name=selection.name, arguments=tuple(arguments),
                                            directives=selection.directives, selection_set=selection.selection_set))
    hoisted = graphql.OperationDefinitionNode(
        operation=op.operation, name=graphql.NameNode(value="Fuzz"), variable_definitions=tuple(definitions),
        directives=(), selection_set=graphql.SelectionSetNode(selections=tuple(selections)))
    return Operation(graphql.print_ast(graphql.DocumentNode(definitions=(hoisted,))), variables, uploads)


def operations(schema: graphql.GraphQLSchema, pools: Pools, kind: str, fields: list[str] | None,
               mode: Mode = Mode.POSITIVE) -> st.SearchStrategy[Operation]:
    """Operations of `kind` ("query" or "mutation") over `fields` (None: any subset of the root fields)."""
    build = queries if kind == "query" else mutations
    documents = build(schema, fields=fields, custom_scalars=scalar_strategies(pools), mode=mode,
                      print_ast=lambda d: d, allow_x00=False, codec="utf-8")
    literal = documents.map(lambda d: Operation(graphql.print_ast(d)))
    if mode is Mode.NEGATIVE:  # an invalid document may not even name valid arguments: send it as it is
        return literal
    hoisted = st.tuples(documents, st.lists(FILES, min_size=1, max_size=2)).map(lambda t: hoist(schema, *t))
    return st.one_of(literal, hoisted)
