"""The tables: the migrations build what the models describe."""
