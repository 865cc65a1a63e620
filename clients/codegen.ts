// graphql-codegen configuration for StableRWA clients: typed documents (client preset) from the committed
// schema and the operations in operations/*.graphql, with every custom scalar mapped (strictScalars: an unmapped
// scalar is an error, not `unknown`). Copy it into a front-end and change `schema`/`documents`/`generates`.
//
// Wire formats (each scalar's description in schema.graphql says the same):
//   BigInt    string  plain decimal integer ("250000000"), read with BigInt(value)
//   Decimal   string  plain decimal, never an exponent ("1234.5"), read with a decimal library, never a float
//   DateTime  string  ISO 8601 in UTC ("2026-01-31T09:30:00+00:00"), read with new Date(value)
//   Date      string  ISO 8601 day ("2026-01-31")
//   UUID      string  lowercase hyphenated UUID, opaque
//   JSON      JsonValue  any JSON value, as is
//   Upload    Blob    input only (GraphQL multipart request)
import type { CodegenConfig } from "@graphql-codegen/cli";

export const scalars = {
  BigInt: { input: "string", output: "string" },
  Decimal: { input: "string", output: "string" },
  DateTime: { input: "string", output: "string" },
  Date: { input: "string", output: "string" },
  UUID: { input: "string", output: "string" },
  JSON: { input: "JsonValue", output: "JsonValue" },
  Upload: { input: "Blob", output: "never" },
} as const;

const config: CodegenConfig = {
  schema: "../schema.graphql",
  documents: ["operations/**/*.graphql", "test/**/*.graphql"],
  ignoreNoDocuments: false,
  generates: {
    "src/gql/": {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: {
        strictScalars: true,
        scalars,
        enumsAsTypes: true,
        useTypeImports: true,
        emitLegacyCommonJSImports: false,
      },
      plugins: [
        { add: { content: "export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };" } },
      ],
    },
  },
};

export default config;
