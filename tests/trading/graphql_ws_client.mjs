// Reference client check: subscribe to `trades` with npm graphql-ws over graphql-transport-ws and print events
// as JSON lines (connected, next, error). Usage: node graphql_ws_client.mjs <ws-url> <token> <marketId>
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, token, marketId] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const timer = setTimeout(() => { say({ event: "timeout" }); process.exit(2); }, 60000);
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  retryAttempts: 0,
  connectionParams: { authorization: `Bearer ${token}` },
  on: { connected: () => say({ event: "connected" }) },
});
client.subscribe(
  {
    query: "subscription($m: UUID!) { trades(marketId: $m) { marketId sequence snapshot " +
      "trades { price quantity takerSide sequence } } }",
    variables: { m: marketId },
  },
  {
    next: (value) => {
      if (value?.data?.trades?.snapshot) return; // the stream starts with the latest trades: wait for a new one
      say({ event: "next", value });
      clearTimeout(timer);
      client.dispose().then(() => process.exit(0));
    },
    error: (err) => { say({ event: "error", error: String(err?.message ?? JSON.stringify(err)) }); process.exit(1); },
    complete: () => {},
  },
);
