"""Generated operations for the fuzz gate: hypothesis-graphql documents over the live schema (one root field, or
several), then sent either with their arguments as literals or hoisted into JSON variables, which reach the scalars'
`parse_value` instead of `parse_literal`, carry values no literal can (Infinity, huge numbers) and send `Upload`
arguments as real multipart files."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import graphql
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, queries

from tests.fuzz.scalars import Pools, argument_kind, named_type, scalar_strategies

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n"
FILES = st.tuples(
    st.sampled_from(["prospectus.pdf", "a.txt", "../../etc/passwd", "", "x" * 300 + ".pdf", "\u202e.pdf"]),
    st.one_of(
        st.sampled_from([PDF, b"", b"MZ\x90\x00", b"hello,world\n", b"\x89PNG\r\n\x1a\n"]), st.binary(max_size=256)
    ),
    st.sampled_from(
        [
            "application/pdf",
            "text/plain",
            "text/csv",
            "image/png",
            "application/x-msdownload",
            "application/octet-stream",
        ]
    ),
)


@dataclass
class Operation:
    query: str
    variables: dict[str, Any] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)  # variable name -> (filename, bytes, type)

    def describe(self) -> str:
        files = {k: (f[0], len(f[1]), f[2]) for k, f in self.files.items()}
        return f"query: {self.query}\nvariables: {self.variables!r}"[:4000] + (f"\nfiles: {files}" if files else "")


def hoist(
    schema: graphql.GraphQLSchema, document: graphql.DocumentNode, files: list[tuple[str, bytes, str]]
) -> Operation:
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
            definitions.append(
                graphql.VariableDefinitionNode(
                    variable=graphql.VariableNode(name=name), type=graphql.parse_type(str(arg_def.type)), directives=()
                )
            )
            if named_type(arg_def.type).name == "Upload" and isinstance(arg_def.type, graphql.GraphQLNonNull) and files:
                variables[name.value] = None
                uploads[name.value] = files[len(uploads) % len(files)]
            else:
                variables[name.value] = graphql.value_from_ast_untyped(argument.value)
                # an input object's Upload fields (`uploadAssetDocument(input: {file: ...})`) become files too
                arg_type = named_type(arg_def.type)
                if (
                    files
                    and isinstance(arg_type, graphql.GraphQLInputObjectType)
                    and isinstance(variables[name.value], dict)
                ):
                    for field_name, field in arg_type.fields.items():
                        if named_type(field.type).name == "Upload" and isinstance(field.type, graphql.GraphQLNonNull):
                            variables[name.value][field_name] = None
                            uploads[f"{name.value}.{field_name}"] = files[len(uploads) % len(files)]
            arguments.append(graphql.ArgumentNode(name=argument.name, value=graphql.VariableNode(name=name)))
        selections.append(
            graphql.FieldNode(
                alias=selection.alias,
                name=selection.name,
                arguments=tuple(arguments),
                directives=selection.directives,
                selection_set=selection.selection_set,
            )
        )
    hoisted = graphql.OperationDefinitionNode(
        operation=op.operation,
        name=graphql.NameNode(value="Fuzz"),
        variable_definitions=tuple(definitions),
        directives=(),
        selection_set=graphql.SelectionSetNode(selections=tuple(selections)),
    )
    return Operation(graphql.print_ast(graphql.DocumentNode(definitions=(hoisted,))), variables, uploads)


RETARGET_SHARE = 0.7  # of the arguments with a known kind that take a value of that kind from the pools


def retarget(
    schema: graphql.GraphQLSchema, document: graphql.DocumentNode, pools: Pools, rnd: random.Random
) -> graphql.DocumentNode:
    """hypothesis-graphql draws each scalar by type alone; here arguments and input fields whose name tells their
    kind (`marketId`, `caseId`, the `id` of `cancelOrder`, `currency`, `holder`, `chainId`) mostly take a value of
    that kind from the pools instead (new nodes: the generated ones may be cached and shared)."""
    op = document.definitions[0]
    assert isinstance(op, graphql.OperationDefinitionNode)
    root = schema.get_root_type(op.operation)
    assert root is not None

    def value(
        name: str, type_: graphql.GraphQLInputType, node: graphql.ValueNode, id_of: graphql.GraphQLNamedType | None
    ) -> graphql.ValueNode:
        named = named_type(type_)
        if isinstance(named, graphql.GraphQLInputObjectType) and isinstance(node, graphql.ObjectValueNode):
            return graphql.ObjectValueNode(
                fields=tuple(
                    graphql.ObjectFieldNode(
                        name=f.name, value=value(f.name.value, named.fields[f.name.value].type, f.value, None)
                    )
                    if f.name.value in named.fields
                    else f
                    for f in node.fields
                )
            )
        if isinstance(node, graphql.ListValueNode) or rnd.random() > RETARGET_SHARE:
            return node
        if name == "chainId" and named.name == "Int":
            return graphql.IntValueNode(value=rnd.choice(["1", "1", "137", "56"]))
        kind = argument_kind(name, id_of)
        choices = pools.named.get(kind or "")
        return graphql.StringValueNode(value=rnd.choice(choices)) if choices and named.name != "Int" else node

    selections = []
    for selection in op.selection_set.selections:
        if not isinstance(selection, graphql.FieldNode) or selection.name.value not in root.fields:
            selections.append(selection)
            continue
        field_def = root.fields[selection.name.value]
        arguments = tuple(
            graphql.ArgumentNode(
                name=a.name,
                value=value(a.name.value, field_def.args[a.name.value].type, a.value, named_type(field_def.type)),
            )
            if a.name.value in field_def.args
            else a
            for a in selection.arguments or ()
        )
        selections.append(
            graphql.FieldNode(
                alias=selection.alias,
                name=selection.name,
                arguments=arguments,
                directives=selection.directives,
                selection_set=selection.selection_set,
            )
        )
    return graphql.DocumentNode(
        definitions=(
            graphql.OperationDefinitionNode(
                operation=op.operation,
                name=op.name,
                variable_definitions=op.variable_definitions,
                directives=op.directives,
                selection_set=graphql.SelectionSetNode(selections=tuple(selections)),
            ),
        )
    )


def operations(
    schema: graphql.GraphQLSchema,
    pools: Pools,
    kind: str,
    fields: list[str] | None,
    mode: Mode = Mode.POSITIVE,
    hostile: bool = True,
) -> st.SearchStrategy[Operation]:
    """Operations of `kind` ("query" or "mutation") over `fields` (None: any subset of the root fields)."""
    build = queries if kind == "query" else mutations
    documents = build(
        schema,
        fields=fields,
        custom_scalars=scalar_strategies(pools, hostile),
        mode=mode,
        print_ast=lambda d: d,
        allow_x00=False,
        codec="utf-8",
    )
    if mode is Mode.NEGATIVE:  # an invalid document may not even name valid arguments: send it as it is
        return documents.map(lambda d: Operation(graphql.print_ast(d)))
    documents = st.tuples(documents, st.randoms(use_true_random=False)).map(
        lambda t: retarget(schema, t[0], pools, t[1])
    )
    literal = documents.map(lambda d: Operation(graphql.print_ast(d)))
    hoisted = st.tuples(documents, st.lists(FILES, min_size=1, max_size=2)).map(lambda t: hoist(schema, *t))
    return st.one_of(literal, hoisted)
