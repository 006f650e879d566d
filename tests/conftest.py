"""Every folder's tests share the helpers in ``support``; their asserts explain
themselves only if pytest rewrites them too (before any test imports them)."""

import pytest

pytest.register_assert_rewrite("support")
