// A minimal typed client for the StableRWA API: queries and mutations over HTTP (fetch), subscriptions over
// graphql-transport-ws (graphql-ws). Documents come from codegen (src/gql), so variables and results are typed
// with the strict scalar mapping of codegen.ts.
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { print, type GraphQLFormattedError } from "graphql";
import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";

export class GraphQLRequestError extends Error {
  constructor(readonly errors: readonly GraphQLFormattedError[]) {
    super(errors.map((e) => `${String(e.extensions?.["code"] ?? "?")}: ${e.message}`).join("; "));
  }

  get codes(): string[] {
    return this.errors.map((e) => String(e.extensions?.["code"] ?? ""));
  }
}

type Variables<V> = V extends Record<string, never> ? [] | [V] : [V];

export class Api {
  accessToken: string | null = null;

  constructor(readonly url: string) {}

  async request<R, V extends Record<string, unknown>>(document: TypedDocumentNode<R, V>,
                                                      ...[variables]: Variables<V>): Promise<R> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.accessToken !== null) headers["authorization"] = `Bearer ${this.accessToken}`;
    const response = await fetch(this.url, {
      method: "POST",
      headers,
      body: JSON.stringify({ query: print(document), variables: variables ?? {} }),
    });
    const body = (await response.json()) as { data?: R | null; errors?: GraphQLFormattedError[] };
    if (body.errors !== undefined && body.errors.length > 0) throw new GraphQLRequestError(body.errors);
    if (body.data === undefined || body.data === null) throw new Error(`no data (HTTP ${response.status})`);
    return body.data;
  }

  /** A graphql-transport-ws client authenticated with the current access token (sent in connection_init). */
  socket(): Client {
    const token = this.accessToken;
    return createClient({
      url: this.url.replace(/^http/, "ws"),
      webSocketImpl: WebSocket,
      connectionParams: token === null ? {} : { authorization: `Bearer ${token}` },
      retryAttempts: 0,
      lazy: true,
    });
  }
}

/** Subscribes and queues every result; `next(predicate)` waits for the first queued or arriving one that matches. */
export class Subscription<R> {
  private readonly queue: R[] = [];
  private waiter: (() => void) | null = null;
  private failure: unknown = null;
  private readonly stop: () => void;

  constructor(client: Client, document: TypedDocumentNode<R, any>, variables: Record<string, unknown> = {}) {
    this.stop = client.subscribe<R>({ query: print(document), variables }, {
      next: (result) => {
        if (result.errors !== undefined && result.errors.length > 0) {
          this.failure = new GraphQLRequestError(result.errors);
        } else if (result.data !== undefined && result.data !== null) {
          this.queue.push(result.data);
        }
        this.waiter?.();
      },
      error: (error) => {
        this.failure = error;
        this.waiter?.();
      },
      complete: () => this.waiter?.(),
    });
  }

  async next(predicate: (value: R) => boolean = () => true, timeoutMs = 10_000): Promise<R> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.failure !== null) throw this.failure;
      const index = this.queue.findIndex(predicate);
      if (index >= 0) return this.queue.splice(index, 1)[0] as R;
      this.queue.length = 0;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("no matching subscription message in time");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = null;
    }
  }

  close(): void {
    this.stop();
  }
}
