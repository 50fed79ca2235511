"""Which .netrc credentials a call takes, decided in the core for both sides."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from svclink.core.http.credentials import add_authorization, netrc_authorization


def basic(pair: str) -> str:
    return "Basic " + base64.b64encode(pair.encode()).decode()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_the_entry_for_the_host_of_the_url(home: Path) -> None:
    entries = "machine user.internal login alice password s3cret\ndefault login x password y\n"
    (home / ".netrc").write_text(entries)
    assert netrc_authorization("http://user.internal:8000/api") == basic("alice:s3cret")
    assert netrc_authorization("http://other.internal/") == basic("x:y")  # the file's default entry


def test_netrc_names_the_file_and_underscore_netrc_is_the_fallback(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home / "_netrc").write_text("machine h login bob password pw\n")
    assert netrc_authorization("http://h/") == basic("bob:pw")
    named = home / "elsewhere"
    named.write_text("machine h account acct password pw2\n")  # no login: the account, as in requests
    monkeypatch.setenv("NETRC", str(named))
    assert netrc_authorization("http://h/") == basic("acct:pw2")


def test_no_file_no_host_or_a_bad_file_gives_nothing(home: Path) -> None:
    assert netrc_authorization("http://h/") is None
    (home / ".netrc").write_text("machine h login bob password pw\n")
    assert netrc_authorization("http://elsewhere/") is None
    (home / ".netrc").write_text("bogus h\n")
    assert netrc_authorization("http://h/") is None


def test_a_header_of_the_calls_own_is_kept_whatever_its_case() -> None:
    own = {"authorization": "Bearer t"}
    add_authorization(own, "Basic x")
    assert own == {"authorization": "Bearer t"}
    bare: dict[str, str] = {"X-Request-ID": "r"}
    add_authorization(bare, "Basic x")
    add_authorization(bare, None)
    assert bare == {"X-Request-ID": "r", "Authorization": "Basic x"}
