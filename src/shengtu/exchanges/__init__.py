"""Every upstream exchange of a task, kept for the operator (see ``service``)."""
