"""OpenFunction's Python import path, ``functions_framework.context.user_context``, for its functions."""
