"""Errors raised for bad user input: each message says what is wrong and what to do."""


class AgileInputError(ValueError):
    """Bad input from the user (file, image, labels, ids): the message says how to fix it."""
