"""One module a payment protocol: each speaks its provider's API through the provider's own
SDK where one does the signing right (:mod:`shengtu.payments.base` says what they share)."""
