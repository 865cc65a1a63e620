// The front-end operations (operations/*.graphql, typed by codegen) against a live API started by pytest
// (tests/clients/test_frontend_clients.py), which passes the seeded accounts and market in the environment.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Api, GraphQLRequestError, Subscription } from "../src/client.js";
import {
  AssetDetailDocument, AssetListDocument, CancelOrderDocument, ConfirmBankTransferDocument, CreatePaymentDocument,
  LoginDocument, MarketsDocument, MeDocument, MyBalancesDocument, MyOrdersDocument, MyOrderUpdatesDocument,
  MyPaymentsDocument, OrderBookUpdatesDocument, PaymentUpdatesDocument, PlaceOrderDocument, RefreshTokenDocument,
  TickerUpdatesDocument, TradeUpdatesDocument,
} from "../src/gql/graphql.js";

function env(name: string): string {
  const value = process.env[name];
  assert.ok(value, `${name} must be set (the pytest wrapper sets it)`);
  return value;
}

const URL = env("RWA_API_URL") + "/graphql";
const PASSWORD = env("RWA_PASSWORD");
const MARKET_ID = env("RWA_MARKET_ID");
const ASSET_ID = env("RWA_ASSET_ID");
const DECIMAL = /^-?\d+(\.\d+)?$/;
const BIG_INT = /^-?\d+$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?\+00:00$/;

const buyer = new Api(URL);
const seller = new Api(URL);
const admin = new Api(URL);
const sockets: ReturnType<Api["socket"]>[] = [];

/** A mutation payload's result, asserting the mutation succeeded: expected failures come back as typed data in
 * the payload's `errors` (code, field path, message) with the result null. */
function succeeded<T>(result: T | null | undefined, errors: readonly { code: string }[]): T {
  assert.deepEqual(errors, []);
  assert.ok(result);
  return result;
}

async function signIn(api: Api, email: string): Promise<string> {
  api.accessToken = null; // a revoked access token would be refused before login runs
  const { login } = await api.request(LoginDocument, { input: { email, password: PASSWORD } });
  const session = succeeded(login.session, login.errors);
  assert.equal(session.mfaRequired, false);
  assert.ok(session.accessToken && session.refreshToken && session.accessTokenExpiresAt);
  assert.match(session.accessTokenExpiresAt, DATE_TIME);
  api.accessToken = session.accessToken;
  return session.refreshToken;
}

function socket(api: Api): ReturnType<Api["socket"]> {
  const client = api.socket();
  sockets.push(client);
  return client;
}

before(async () => {
  await signIn(seller, env("RWA_SELLER_EMAIL"));
  await signIn(admin, env("RWA_ADMIN_EMAIL"));
});

after(async () => {
  await Promise.all(sockets.map((s) => s.dispose()));
});

test("login, refresh (rotating) and me", async () => {
  const refresh = await signIn(buyer, env("RWA_BUYER_EMAIL"));
  const { refreshToken } = await buyer.request(RefreshTokenDocument, { input: { refreshToken: refresh } });
  const renewed = succeeded(refreshToken.session, refreshToken.errors);
  assert.notEqual(renewed.refreshToken, refresh);
  buyer.accessToken = renewed.accessToken;
  const { me } = await buyer.request(MeDocument);
  assert.equal(me.email, env("RWA_BUYER_EMAIL"));
  assert.deepEqual(me.roles, ["INVESTOR"]);
  // a spent refresh token is refused with a code the client can act on (sign in again)
  await assert.rejects(buyer.request(RefreshTokenDocument, { input: { refreshToken: refresh } }),
                       (e: unknown) => e instanceof GraphQLRequestError && e.codes[0] === "UNAUTHENTICATED");
  // ... and reusing it revoked the whole login: sign in afresh for the rest of the run
  await signIn(buyer, env("RWA_BUYER_EMAIL"));
});

test("asset list pages with cursors; asset detail with BigInt supply", async () => {
  const first = await buyer.request(AssetListDocument, { first: 1 });
  assert.equal(first.assets.edges.length, 1);
  assert.equal(first.assets.pageInfo.hasNextPage, true);
  const second = await buyer.request(AssetListDocument, { first: 1, after: first.assets.pageInfo.endCursor });
  assert.equal(second.assets.edges.length, 1);
  assert.notEqual(second.assets.edges[0]?.node.id, first.assets.edges[0]?.node.id);

  const { asset } = await buyer.request(AssetDetailDocument, { id: ASSET_ID });
  assert.ok(asset, "a visible asset (lookups are null when missing or hidden)");
  assert.equal(asset.id, ASSET_ID);
  assert.match(asset.createdAt, DATE_TIME);
  const token = asset.tokens[0];
  assert.ok(token);
  assert.match(token.totalSupply, BIG_INT);
  assert.equal(typeof BigInt(token.totalSupply), "bigint");
  assert.deepEqual(asset.metadata, JSON.parse(env("RWA_ASSET_METADATA")));
});

test("order book, trades and ticker subscriptions see a trade placed over HTTP; cancel an order", async () => {
  const { markets } = await buyer.request(MarketsDocument, { status: "OPEN" });
  const market = markets.find((m) => m.id === MARKET_ID);
  assert.ok(market);
  assert.match(market.tickSize, DECIMAL);

  const client = socket(buyer);
  const book = new Subscription(client, OrderBookUpdatesDocument, { marketId: MARKET_ID, depth: 10 });
  const trades = new Subscription(client, TradeUpdatesDocument, { marketId: MARKET_ID });
  const ticker = new Subscription(client, TickerUpdatesDocument, { marketId: MARKET_ID });
  const mine = new Subscription(client, MyOrderUpdatesDocument);
  const snapshot = await book.next((b) => b.orderBook.snapshot);
  assert.equal(snapshot.orderBook.marketId, MARKET_ID);
  // the trades stream starts with the latest trades (none yet) and the market's trade sequence
  const before = await trades.next((t) => t.trades.snapshot);
  assert.deepEqual(before.trades.trades, []);
  await ticker.next(); // the ticker now

  const sell = await seller.request(PlaceOrderDocument, {
    input: { marketId: MARKET_ID, side: "SELL", type: "LIMIT", quantity: "2", price: "1.50" } });
  assert.equal(succeeded(sell.placeOrder.order, sell.placeOrder.errors).status, "NEW");
  const buy = await buyer.request(PlaceOrderDocument, {
    input: { marketId: MARKET_ID, side: "BUY", type: "LIMIT", quantity: "2", price: "1.50" } });
  assert.equal(succeeded(buy.placeOrder.order, buy.placeOrder.errors).status, "FILLED");
  const update = await trades.next((t) => !t.trades.snapshot);
  assert.equal(update.trades.sequence, before.trades.sequence + 1);
  const trade = update.trades.trades[0];
  assert.ok(trade && update.trades.trades.length === 1);
  assert.equal(trade.sequence, update.trades.sequence);
  assert.equal(trade.price, "1.5");
  assert.equal(trade.quantity, "2");
  assert.equal(trade.takerSide, "BUY");
  assert.match(trade.createdAt, DATE_TIME);
  const tick = await ticker.next((t) => t.ticker.last === "1.5");
  assert.match(tick.ticker.volume24h, DECIMAL);
  const later = await book.next((b) => b.orderBook.sequence > snapshot.orderBook.sequence);
  assert.ok(later.orderBook.sequence > snapshot.orderBook.sequence);
  await mine.next((o) => o.myOrders.status === "FILLED");

  const placed = await buyer.request(PlaceOrderDocument, {
    input: { marketId: MARKET_ID, side: "BUY", type: "LIMIT", quantity: "1", price: "1.00", clientOrderId: "ui-1" } });
  const resting = succeeded(placed.placeOrder.order, placed.placeOrder.errors);
  assert.equal(resting.status, "NEW");
  assert.equal(resting.reservedCash, "1");
  const { cancelOrder } = await buyer.request(CancelOrderDocument, { id: resting.id });
  assert.equal(succeeded(cancelOrder.order, cancelOrder.errors).status, "CANCELED");
  await mine.next((o) => o.myOrders.id === resting.id && o.myOrders.status === "CANCELED");
  // an expected failure is data: typed code, the input path at fault, no order
  const refused = await buyer.request(PlaceOrderDocument, {
    input: { marketId: MARKET_ID, side: "BUY", type: "LIMIT", quantity: "-1", price: "1.00" } });
  assert.equal(refused.placeOrder.order, null);
  assert.equal(refused.placeOrder.errors[0]?.code, "BAD_USER_INPUT");
  assert.deepEqual(refused.placeOrder.errors[0]?.field, ["input", "quantity"]);

  const { myOrders } = await buyer.request(MyOrdersDocument, { marketId: MARKET_ID, first: 50 });
  const statuses = new Set(myOrders.edges.map((e) => e.node.status));
  assert.ok(statuses.has("FILLED") && statuses.has("CANCELED"), [...statuses].join());
  const canceled = await buyer.request(MyOrdersDocument, { status: ["CANCELED"], first: 5 });
  assert.deepEqual(canceled.myOrders.edges.map((e) => e.node.clientOrderId), ["ui-1"]);

  const { myBalances } = await buyer.request(MyBalancesDocument);
  const cash = myBalances.find((b) => b.currency === market.quoteCurrency);
  assert.ok(cash);
  for (const amount of [cash.available, cash.reserved, cash.total]) assert.match(amount, DECIMAL);
  assert.equal(cash.reserved, "0");
  for (const s of [book, trades, ticker, mine]) s.close();
});

test("a bank payment: created, followed live until an administrator confirms it, listed", async () => {
  const created = await buyer.request(CreatePaymentDocument, {
    input: { amount: "25.00", currency: "USD", method: "BANK_TRANSFER", idempotencyKey: `ui-${Date.now()}` } });
  const createPayment = succeeded(created.createPayment.payment, created.createPayment.errors);
  assert.equal(createPayment.state, "AWAITING_FUNDS");
  assert.equal(createPayment.amount, "25");
  assert.ok(createPayment.referenceCode);

  const updates = new Subscription(socket(buyer), PaymentUpdatesDocument, { id: createPayment.id });
  const current = await updates.next();
  assert.equal(current.paymentUpdates.state, "AWAITING_FUNDS");
  const { confirmBankTransfer } = await admin.request(ConfirmBankTransferDocument,
                                                      { input: { paymentId: createPayment.id, bankReference: "BANK-REF-1" } });
  assert.equal(succeeded(confirmBankTransfer.payment, confirmBankTransfer.errors).state, "CONFIRMED");
  const confirmed = await updates.next((u) => u.paymentUpdates.state === "CONFIRMED");
  assert.equal(confirmed.paymentUpdates.previousState, "AWAITING_FUNDS");
  assert.equal(confirmed.paymentUpdates.creditedAmount, "25");
  updates.close();

  const { payments } = await buyer.request(MyPaymentsDocument, { first: 10 });
  const listed = payments.edges.map((e) => e.node).find((p) => p.id === createPayment.id);
  assert.ok(listed);
  assert.equal(listed.state, "CONFIRMED");
  assert.match(listed.receivedUnits, BIG_INT);
});
