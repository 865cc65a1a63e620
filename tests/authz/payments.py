"""Payments and webhook administration in the authorization matrix."""

from tests.authz import Rule

NOBODY = "00000000-0000-0000-0000-000000000000"
STAFF = frozenset({"ADMIN", "COMPLIANCE"})
ADMIN = frozenset({"ADMIN"})

ENTRIES = {
    "Query.payments": Rule(
        "{ payments(first: 1) { edges { node { id state } } } }", scopes=frozenset({"payments:read"})
    ),
    "Query.payment": Rule(f'{{ payment(id: "{NOBODY}") {{ id }} }}', scopes=frozenset({"payments:read"})),
    "Query.settlementReport": Rule(
        '{ settlementReport(from: "2026-01-01T00:00:00Z", to: "2026-02-01T00:00:00Z") { state count } }', roles=STAFF
    ),
    "Query.webhookEndpoints": Rule("{ webhookEndpoints { id url } }", roles=ADMIN),
    "Query.webhookDeliveries": Rule(
        "{ webhookDeliveries(state: DEAD, first: 1) { edges { node { id } } } }", roles=ADMIN
    ),
    "Mutation.createPayment": Rule(
        'mutation { createPayment(input: {amount: "10.00", currency: "USD", method: BANK_TRANSFER, '
        'idempotencyKey: "authz"}) { payment { id state } errors { code } } }',
        scopes=frozenset({"payments:write"}),
    ),
    "Mutation.cancelPayment": Rule(
        f'mutation {{ cancelPayment(id: "{NOBODY}") {{ payment {{ id }} errors {{ code }} }} }}',
        scopes=frozenset({"payments:write"}),
    ),
    "Mutation.confirmBankTransfer": Rule(
        f'mutation {{ confirmBankTransfer(input: {{paymentId: "{NOBODY}", bankReference: "B1"}}) '
        "{ payment { id } errors { code } } }",
        roles=ADMIN,
    ),
    "Mutation.refundPayment": Rule(
        f'mutation {{ refundPayment(input: {{paymentId: "{NOBODY}", reason: "r"}}) '
        "{ paymentRefund { id } errors { code } } }",
        roles=ADMIN,
    ),
    "Mutation.acceptLatePayment": Rule(
        f'mutation {{ acceptLatePayment(input: {{paymentId: "{NOBODY}", reason: "r"}}) '
        "{ payment { id } errors { code } } }",
        roles=ADMIN,
    ),
    "Mutation.failPayment": Rule(
        f'mutation {{ failPayment(input: {{paymentId: "{NOBODY}", reason: "r"}}) {{ payment {{ id }} errors {{ code }} }} }}',
        roles=ADMIN,
    ),
    "Mutation.createWebhookEndpoint": Rule(
        'mutation { createWebhookEndpoint(input: {url: "https://example.com/h"}) '
        "{ webhookEndpoint { id } errors { code } } }",
        roles=ADMIN,
    ),
    "Mutation.disableWebhookEndpoint": Rule(
        f'mutation {{ disableWebhookEndpoint(id: "{NOBODY}") {{ webhookEndpoint {{ id }} errors {{ code }} }} }}',
        roles=ADMIN,
    ),
    "Mutation.redeliverWebhook": Rule(
        f'mutation {{ redeliverWebhook(id: "{NOBODY}") {{ webhookDelivery {{ id }} errors {{ code }} }} }}', roles=ADMIN
    ),
    "Subscription.paymentUpdates": Rule(
        f'subscription {{ paymentUpdates(id: "{NOBODY}") {{ state }} }}', scopes=frozenset({"payments:read"})
    ),
}
