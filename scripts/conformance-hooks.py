"""Schemathesis hooks of scripts/conformance.

A schema says which requests are well formed, not what the shop holds. A few
operations refuse a well-formed request with 422 because of what the shop or
the caller's cart holds, or because of a rule between items that JSON Schema
cannot state; the contract (shared/api-contract.md) and the OpenAPI document
name each of these refusals by its error code. Those refusals, and only
those, are not counted as "schema-valid request rejected" (ST202).

DELETE /products/{id} archives rather than deletes (contract): an archived
product read by id, and what hangs off it (its reviews, rating,
recommendations, storefront page), are not counted as "deleted resource
still available" (ST301). Every other check, and these two for every other answer, stay as
they are.
"""

import json

import schemathesis

# Operation -> the error codes of its 422 answers that depend on state or on
# a rule between items, each documented on the operation.
STATE_DEPENDENT = {
    # "An unknown or archived SKU is 422" (contract); a SKU priced in another
    # currency than the cart's lines, or a line that would pass 999 units.
    "POST /api/v1/cart/items": {
        "unknown_sku",
        "sku_unavailable",
        "currency_mismatch",
        "quantity_limit_exceeded",
    },
    # The SKU of the line was archived since it was added.
    "PATCH /api/v1/cart/items/{sku}": {"sku_unavailable"},
    # "Checkout with an empty cart is 422" (contract); a line no longer sold,
    # or priced in another currency than the rest of the cart; the cart's
    # promotion code no longer applies; nobody ships to the address (or not
    # the method asked for); no saved address with the id given, or no
    # default one when no address is given.
    "POST /api/v1/checkout": {
        "unknown_address",
        "address_required",
        "cart_empty",
        "sku_unavailable",
        "line_unavailable",
        "promotion_not_applicable",
        "shipping_unavailable",
    },
    # The same refusals as the checkout it prices.
    "POST /api/v1/checkout/quote": {
        "unknown_address",
        "address_required",
        "cart_empty",
        "sku_unavailable",
        "line_unavailable",
        "promotion_not_applicable",
        "shipping_unavailable",
    },
    # A code no promotion has, or one that does not apply to the cart
    # (disabled, outside its dates, used up, under its minimum).
    "POST /api/v1/cart/promotions": {"promotion_not_applicable"},
    # Rules between fields: a value or amount for the kind, an end after
    # the start, one amount per currency; on PATCH, with the stored rules.
    "POST /api/v1/promotions": {"invalid_promotion"},
    "PATCH /api/v1/promotions/{id}": {"invalid_promotion"},
    # One price per currency.
    "POST /api/v1/shipping-methods": {"duplicate_currency"},
    # A parent no category has.
    "POST /api/v1/categories": {"unknown_parent"},
    # A new password needs the current one (a rule between fields).
    "PATCH /api/v1/me": {"current_password_required"},
    # An amount in another currency than the order's, or more than is left
    # of its total to refund.
    "POST /api/v1/orders/{id}/refund": {"currency_mismatch", "refund_exceeds_total"},
    # A SKU the order did not buy, or more units than are left to return.
    "POST /api/v1/orders/{id}/returns": {"return_exceeds_purchase"},
    # The first order of a subscription: a SKU no active product has, SKUs
    # priced in different currencies, or an address nobody ships to
    # (nothing is kept); a SKU listed twice.
    "POST /api/v1/subscriptions": {
        "sku_unavailable",
        "currency_mismatch",
        "shipping_unavailable",
        "duplicate_sku",
    },
    # Who is assigned: the signed-in user, else the subject given.
    "GET /api/v1/experiments/{key}/assignment": {"subject_required"},
    # Two variants of one name (a rule between items).
    "POST /api/v1/admin/experiments": {"duplicate_variant"},
    # A report's range: from before to, at most 3,660 days (a rule between
    # parameters).
    **{
        f"GET /api/v1/{who}/reports/{report}": {"invalid_range"}
        for who in ("admin", "seller")
        for report in ("sales", "top-products", "funnel", "search-terms", "events")
    },
    # A user keeps at most 20 addresses.
    "POST /api/v1/me/addresses": {"too_many_addresses"},
    # Every variant of a product is priced in one currency, and has at most
    # one price in each other currency.
    "POST /api/v1/products": {"currency_mismatch", "duplicate_currency"},
    "PATCH /api/v1/products/{id}": {"currency_mismatch", "duplicate_currency"},
    # A currency the shop does not sell in (shop.currencies), or one a line
    # of the cart has no price in.
    "PUT /api/v1/cart/currency": {"currency_not_sold", "currency_mismatch"},
}


# DELETE /products/{id} archives the product (contract): it can no longer be
# bought, and reading it still answers 200 with `"status": "archived"`.
ARCHIVING_DELETE = "DELETE /api/v1/products/{id}"


def _json(response):
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def _error_code(response):
    body = _json(response)
    try:
        return body["error"]["code"]
    except (KeyError, TypeError):
        return None


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if failure.code == "ST202" and response.status_code == 422:
        allowed = STATE_DEPENDENT.get(case.operation.label, set())
        return _error_code(response) not in allowed
    if failure.code == "ST301" and failure.operation == ARCHIVING_DELETE:
        # What hangs off the archived product (its reviews, rating,
        # recommendations, its storefront page) stays readable with it.
        label = case.operation.label
        if label.startswith("GET /api/v1/products/{id}/") or label.startswith(
            "GET /api/v1/storefront/products/{id}"
        ):
            return False
        body = _json(response)
        return not (isinstance(body, dict) and body.get("status") == "archived")
    return True
