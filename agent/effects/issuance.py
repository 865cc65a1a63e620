"""Primary issuance's completion handlers: an offering's batched mint settles its subscriptions' cash (or releases
it when the mint failed); a direct issuance or redemption is SETTLED once all its operations are confirmed."""

from agent.handlers import register
from resolvers.issuance import closing, direct

register(closing.MINT_KIND, on_confirmed=closing.mint_confirmed, on_failed=closing.mint_failed)
register("issuance.", on_confirmed=direct.operation_confirmed, on_failed=direct.operation_failed)
