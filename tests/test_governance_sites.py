"""What counts as inside the site, the site's own hosts, and toolset servers under governance (issue 21)."""
from __future__ import annotations

import socket
from datetime import datetime
from types import SimpleNamespace

import pytest
import yaml

from clinseek.cli import main
from clinseek.engine import assemble, check_governance
from clinseek.errors import ToolError, UserError
from clinseek.hosts.base import address_is_local, site_host_problem
from clinseek.recipe import load_recipe
from clinseek.toolsets import Binding, Endpoint, Episode, Toolset
from spine_fixtures import write_recipe


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


# Inside the site -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",   # the cloud metadata service
    "http://169.254.10.20:8000/v1",
    "http://[fe80::1]:8000/v1",
    "http://[fe80::1%25eth0]:8000/v1",
    "http://[::ffff:169.254.169.254]/v1",          # link-local written as an IPv4-mapped IPv6 address
    "http://gpu.local:8000/v1",                    # mDNS: any machine on the network can answer
    "http://GPU.LOCAL.:8000/v1",
    "https://api.openai.com/v1",
    "http://100.64.0.1/v1",                        # carrier-grade NAT is not the site's
    "http://2852039166/v1",                        # 169.254.169.254 written as one number
])
def test_link_local_mdns_and_public_addresses_are_outside(url):
    assert not address_is_local(url)
    assert not address_is_local(url, ["169.254.169.254", "169.254.0.0/16", "gpu.local", "fe80::1"])


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/v1", "http://[::1]:8000/v1", "http://localhost:8000", "http://vllm.localhost/v1",
    "http://0.0.0.0:8000/v1", "http://10.1.2.3/v1", "http://172.16.0.1/v1", "http://172.31.255.1/v1",
    "http://192.168.1.5/v1", "http://[fd00::5]/v1", "http://[::ffff:10.0.0.1]/v1",
])
def test_loopback_and_private_addresses_are_inside(url):
    assert address_is_local(url)


def test_site_hosts_name_names_suffixes_addresses_and_networks():
    hosts = ["gateway.example.org", "*.gpu.example.org", "203.0.113.7", "198.51.100.0/24",
             "http://qd.example.net:6333"]
    assert address_is_local("https://gateway.example.org/v1", hosts)
    assert address_is_local("https://GATEWAY.example.org./v1", hosts)
    assert address_is_local("https://node3.gpu.example.org:8000/v1", hosts)
    assert address_is_local("http://203.0.113.7:8000/v1", hosts)
    assert address_is_local("http://198.51.100.9/v1", hosts)
    assert address_is_local("http://qd.example.net:443", hosts)
    assert not address_is_local("https://evil-gateway.example.org/v1", hosts)
    assert not address_is_local("https://gpu.example.org.evil.com/v1", hosts)
    assert not address_is_local("http://203.0.113.8/v1", hosts)
    assert not address_is_local("https://gateway.example.org/v1")


@pytest.mark.parametrize("entry, expected", [
    ("169.254.169.254", "link-local"), ("169.254.0.0/16", "link-local"), ("fe80::1", "link-local"),
    ("[fe80::2]", "link-local"), ("gpu.local", "mDNS"), ("0.0.0.0/0", "link-local"), ("8.0.0.0/4", "too broad"),
    ("10.0.0.0/33", "not a network"), ("", "must be a host name"), (7, "must be a host name"),
])
def test_site_host_entries_that_can_never_be_inside_are_named(entry, expected):
    assert expected in site_host_problem(entry)


def test_ordinary_site_host_entries_are_fine():
    assert all(site_host_problem(e) is None for e in ("gateway.example.org", "*.example.org", "10.1.2.3",
                                                       "10.1.0.0/16", "https://gw.example.org:8443"))


# Hosts -----------------------------------------------------------------------------------------------------------
def outside(tmp_path, url, **fields):
    return write_recipe(tmp_path, host={"provider": "scripted", "base_url": url}, **fields)


def test_a_link_local_host_needs_the_opt_in(tmp_path, registry, capsys):
    for url in ("http://169.254.169.254/v1", "http://gpu.local:8000/v1", "http://[fe80::1]:8000/v1"):
        code, _, err = run_cli(capsys, "validate", str(outside(tmp_path, url)))
        assert code == 2 and "is outside the site" in err and "allow_external_hosts" in err, url


def test_site_hosts_in_the_recipe_put_a_host_inside(tmp_path, registry):
    url = "https://gateway.example.org/v1"
    with pytest.raises(UserError, match="is outside the site"):
        assemble(load_recipe(outside(tmp_path, url)))
    assemble(load_recipe(outside(tmp_path, url, governance={"site_hosts": ["gateway.example.org"]})))


def test_site_hosts_in_the_site_file_put_a_host_inside(tmp_path, registry):
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"site_hosts": ["gateway.example.org", "10.9.0.0/16"]}))
    assemble(load_recipe(outside(tmp_path, "https://gateway.example.org/v1"), site=site))
    with pytest.raises(UserError, match="is outside the site"):
        assemble(load_recipe(outside(tmp_path, "https://other.example.org/v1"), site=site))


def test_site_hosts_that_can_never_be_inside_are_refused(tmp_path, registry, capsys):
    recipe = outside(tmp_path, "http://10.0.0.1/v1", governance={"site_hosts": ["169.254.169.254", "gpu.local"]})
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2
    assert "governance.site_hosts[0]: '169.254.169.254' is a link-local address" in err
    assert "governance.site_hosts[1]: 'gpu.local' is an mDNS (.local) name" in err
    site = tmp_path / "site.yaml"
    site.write_text("site_hosts: gateway.example.org\n")
    code, _, err = run_cli(capsys, "validate", str(outside(tmp_path, "http://10.0.0.1/v1")), "--site", str(site))
    assert code == 2 and "site_hosts: must be a list" in err


def test_an_explicit_site_local_false_is_not_overridden_by_site_hosts(tmp_path, registry):
    recipe = write_recipe(tmp_path, host={"provider": "scripted", "base_url": "http://10.0.0.1/v1",
                                          "site_local": False})
    with pytest.raises(UserError, match="is outside the site"):
        assemble(load_recipe(recipe))


# Toolset endpoints -------------------------------------------------------------------------------------------
def kb_recipe(tmp_path, url, kb=None, **fields):
    tools = [{"use": "notes"}, {"use": "kb", "with": {"url": url, **(kb or {})}}]
    return write_recipe(tmp_path, tools=tools, **fields)


def test_a_public_kb_server_needs_an_opt_in(tmp_path, registry, capsys):
    recipe = kb_recipe(tmp_path, "http://qdrant.example.com:6333")
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2 and "Traceback" not in err
    assert "tools[1].with.url: the kb server http://qdrant.example.com:6333 is outside the site" in err
    assert "patient-derived data" in err and "allow_external_hosts" in err and "site_local: true" in err
    assert "recipe.yaml:" in err.split("tools[1].with.url")[0].splitlines()[-1]  # the recipe line of `url:`


@pytest.mark.parametrize("kb, fields", [
    ({}, {"governance": {"allow_external_hosts": True}}),
    ({"site_local": True}, {}),
    ({}, {"governance": {"site_hosts": ["qdrant.example.com"]}}),
])
def test_the_kb_opt_ins(tmp_path, registry, kb, fields):
    assemble(load_recipe(kb_recipe(tmp_path, "http://qdrant.example.com:6333", kb, **fields)))


@pytest.mark.parametrize("url", ["http://127.0.0.1:6333", "http://qdrant.localhost:6333", "http://10.2.0.9:6333"])
def test_a_kb_server_inside_the_site_needs_no_opt_in(tmp_path, registry, url):
    assemble(load_recipe(kb_recipe(tmp_path, url)))


def test_a_link_local_kb_server_is_outside(tmp_path, registry):
    with pytest.raises(UserError, match="is outside the site"):
        assemble(load_recipe(kb_recipe(tmp_path, "http://169.254.169.254:6333")))


def test_kb_declares_its_server_as_receiving_patient_derived_data():
    from clinseek_kb.config import KbConfig
    from clinseek_kb.toolset import KbToolset

    assert KbToolset(KbConfig(path="kb")).remote_endpoints() == []
    assert KbToolset(KbConfig(url="http://q:6333", site_local=False)).remote_endpoints() == [
        Endpoint("http://q:6333", True, site_local=False, key="url")]
    with pytest.raises(ValueError, match="site_local only applies to a Qdrant server"):
        KbConfig(path="kb", site_local=True)


class _PairsToolset(Toolset):
    """A third-party toolset that answers with plain (url, carries_patient_data) pairs."""

    name = "pairs"
    patient_data = False

    def __init__(self, endpoints):
        super().__init__(None)
        self.endpoints = endpoints

    def remote_endpoints(self):
        return self.endpoints


def _assembly(tmp_path, toolsets, governance=None):
    governance = SimpleNamespace(**{"allow_external_hosts": False, "site_hosts": [], **(governance or {})})
    recipe = SimpleNamespace(governance=governance,
                             agent=SimpleNamespace(evidence="seek"), host=SimpleNamespace(provider="scripted"),
                             tools=[SimpleNamespace(use=t.name) for t in toolsets])
    host = SimpleNamespace(site_local=True, config=SimpleNamespace(site_local=None, base_url=None),
                           describe=lambda: {})
    loaded = SimpleNamespace(recipe=recipe, site=None, secrets=set(), site_path=None,
                             where=lambda path: f"recipe.yaml:{len(path)}:1")
    return SimpleNamespace(recipe=recipe, loaded=loaded, host=host, toolsets=toolsets, prompts=None)


def test_plain_pairs_are_governed_and_data_free_endpoints_are_not(tmp_path):
    check_governance(_assembly(tmp_path, [_PairsToolset([("https://tiles.example.com", False)])]))
    with pytest.raises(UserError, match=r"tools\[0\].with.url: the pairs server https://api.example.com"):
        check_governance(_assembly(tmp_path, [_PairsToolset([("https://api.example.com", True)])]))
    check_governance(_assembly(tmp_path, [_PairsToolset([("https://api.example.com", True)])],
                               {"allow_external_hosts": True}))


def test_a_toolset_that_cannot_list_its_servers_is_refused(tmp_path):
    class Broken(_PairsToolset):
        def remote_endpoints(self):
            raise RuntimeError("config not understood")

    with pytest.raises(UserError, match="could not list its servers"):
        check_governance(_assembly(tmp_path, [Broken([])]))


def test_passwords_in_endpoint_urls_are_not_shown(tmp_path):
    with pytest.raises(UserError) as info:
        check_governance(_assembly(tmp_path, [_PairsToolset([("https://bob:hunter2-pw@api.example.com", True)])]))
    assert "hunter2-pw" not in info.value.render()


# kb server failures ------------------------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.filterwarnings("ignore")
def test_kb_search_against_a_server_that_does_not_answer_is_a_tool_error(tmp_path):
    from clinseek_kb.config import KbConfig
    from clinseek_kb.store import Store
    from clinseek_kb.toolset import KbToolset

    url = f"http://127.0.0.1:{_closed_port()}"
    ts = KbToolset(KbConfig(url=url, collections=["reference"]), SimpleNamespace(recipe_dir=tmp_path))
    ts.store = Store(url=url)
    binding = Binding(qid="q-00001", subject_id=10000032, hadm_id=None, prediction_time=datetime(2180, 1, 1))
    with pytest.raises(ToolError, match="the knowledge base server did not answer") as info:
        ts.kb_search(Episode(binding=binding, task=None), "sepsis lactate")
    assert "Traceback" not in str(info.value) and "go on without the knowledge base" in str(info.value)
    ts.close()


@pytest.mark.filterwarnings("ignore")
def test_opening_a_kb_server_that_does_not_answer_is_a_user_error(tmp_path):
    from clinseek_kb.config import KbConfig
    from clinseek_kb.toolset import KbToolset

    url = f"http://127.0.0.1:{_closed_port()}"
    ts = KbToolset(KbConfig(url=url, collections=["reference"]),
                   SimpleNamespace(recipe_dir=tmp_path, cache_dir=tmp_path, warn=lambda _: None))
    with pytest.raises(UserError, match=f"cannot use the knowledge base at Qdrant server {url}") as info:
        ts.open()
    assert "start the Qdrant server" in info.value.render()
    assert ts.store is None


@pytest.mark.filterwarnings("ignore")
def test_kb_search_command_against_a_server_that_does_not_answer_exits_2(tmp_path, registry, capsys):
    recipe = kb_recipe(tmp_path, f"http://127.0.0.1:{_closed_port()}")
    code, _, err = run_cli(capsys, "kb", "search", str(recipe), "sepsis")
    assert code == 2 and "cannot use the knowledge base at Qdrant server" in err and "Traceback" not in err
