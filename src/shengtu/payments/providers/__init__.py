"""One module per payment protocol (:mod:`shengtu.payments.base` says what each does)."""
