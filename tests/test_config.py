from pathlib import Path

import pytest

from bot.config import Config, ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]


def test_example_config_runs_as_is_and_matches_defaults():
    config = load_config(REPO / "config.example.yaml")
    defaults = Config()
    for section in ("discord", "database", "studies", "logging", "discussions", "moderation",
                    "imports"):
        assert getattr(config, section) == getattr(defaults, section), section
    assert config.database_path == REPO / "data" / "studies.db"


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config.discord.api_base_url == "https://discord.com/api/v10"
    assert config.database.path == "data/studies.db"
    assert config.database_path == tmp_path / "data" / "studies.db"
    # The bundled seed studies and topics (the repo's data/, installed as studybot_data).
    assert config.studies.sources is None and config.studies.topics is None
    assert config.source_paths == [(REPO / "data" / "studies.yaml").resolve()]
    assert config.topics_path == (REPO / "data" / "topics.yaml").resolve()


def test_a_config_elsewhere_uses_the_bundled_data_and_resolves_its_own_paths(tmp_path):
    folder = tmp_path / "etc" / "studybot"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("database:\n  path: state/studies.db\n")
    config = load_config(folder / "config.yaml")
    assert config.database_path == folder / "state" / "studies.db"
    assert config.topics_path.read_text() == (REPO / "data" / "topics.yaml").read_text()
    assert [p.name for p in config.source_paths] == ["studies.yaml"]
    assert config.source_paths[0].is_file()
    (folder / "config.yaml").write_text(
        "studies:\n  sources: [mine.yaml, /srv/more.yaml]\n  topics: vocab/topics.yaml\n")
    config = load_config(folder / "config.yaml")
    assert config.source_paths == [folder / "mine.yaml", Path("/srv/more.yaml")]
    assert config.topics_path == folder / "vocab" / "topics.yaml"
    assert parse_config("studies:\n  sources: []\n").source_paths == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("database:\n  path: 3\n", "database.path: expected a string"),
        ("database:\n  paht: x.db\n", "database.paht: unknown key"),
        ("discord:\n  dev_guild_ids: 5\n", "discord.dev_guild_ids: expected a list of integers"),
        ("discord:\n  dev_guild_ids: [abc]\n", "discord.dev_guild_ids[0]: expected an integer"),
        ("logging:\n  level: LOUD\n", "logging.level: expected one of"),
        ("discord:\n  api_base_url: ftp://x\n", "discord.api_base_url: expected an http(s) URL"),
        ("studies:\n  sources:\n", "studies.sources: expected a list of strings, got nothing"),
        ("studies:\n  topics:\n", "studies.topics: expected a string, got nothing"),
        ("discussions:\n  archive_after_minutes: 5\n", "discussions.archive_after_minutes"),
        ("databse: {}\n", "databse: unknown key"),
        ("- 1\n- 2\n", "config: expected a mapping"),
    ],
)
def test_strict_validation_names_the_dotted_key(text, message):
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_token_is_refused_in_yaml():
    with pytest.raises(ConfigError, match="DISCORD_TOKEN"):
        parse_config("discord:\n  token: abc\n")


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("discord: [\n")
    with pytest.raises(ConfigError, match=r"c\.yaml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_snowflakes_as_strings_and_relative_paths(tmp_path):
    path = tmp_path / "conf.yaml"
    path.write_text("discord:\n  dev_guild_ids: ['123', 456]\ndatabase:\n  path: x/y.db\n")
    config = load_config(path)
    assert config.discord.dev_guild_ids == (123, 456)
    assert config.database_path == tmp_path / "x" / "y.db"


def test_feeds_follows_and_pubmed():
    config = parse_config("""
follows: {min_minutes_between_alerts: 30}
feeds:
  - name: hair-loss
    query: 'alopecia[mh] OR "hair loss"[tiab]'
    topics: [androgenetic-alopecia]
  - name: prp
    query: platelet-rich plasma[tiab]
    every_minutes: 60
pubmed: {api_base_url: "http://127.0.0.1:9/entrez/eutils/", email: ops@example.org}
""")
    assert config.follows.min_minutes_between_alerts == 30
    hair, prp = config.feeds
    assert (hair.name, hair.every_minutes, hair.topics) == ("hair-loss", 720,
                                                            ("androgenetic-alopecia",))
    assert (prp.query, prp.every_minutes, prp.topics) == ("platelet-rich plasma[tiab]", 60, ())
    assert config.pubmed.api_base_url == "http://127.0.0.1:9/entrez/eutils"
    assert config.pubmed.email == "ops@example.org"
    defaults = Config()
    assert defaults.feeds == () and defaults.follows.min_minutes_between_alerts == 60
    assert defaults.pubmed.api_base_url == "https://eutils.ncbi.nlm.nih.gov/entrez/eutils"
    assert load_config(REPO / "config.example.yaml").feeds == ()


@pytest.mark.parametrize("text, message", [
    ("feeds: {name: a}", "feeds: expected a list"),
    ("feeds: [{query: x}]", "feeds[0].name: required"),
    ("feeds: [{name: a}]", "feeds[0].query: required"),
    ("feeds: [{name: Hair Loss, query: x}]", "feeds[0].name: expected 1-32 lower-case"),
    ("feeds: [{name: a, query: x, every_minutes: 0}]", "feeds[0].every_minutes: expected"),
    ("feeds: [{name: a, query: x}, {name: a, query: y}]", "feeds[1].name: 'a' is used twice"),
    ("feeds: [{name: a, query: x, topic: [prp]}]", "feeds[0].topic: unknown key"),
    ("pubmed: {api_key: abc}", "pubmed.api_key: the key is read only from the NCBI_API_KEY"),
    ("pubmed: {email: nobody}", "pubmed.email: expected an email address"),
    ("pubmed: {api_base_url: ftp://x}", "pubmed.api_base_url: expected an http(s) URL"),
    ("follows: {min_minutes_between_alerts: 0}", "follows.min_minutes_between_alerts"),
])
def test_feed_and_follow_mistakes_name_the_key(text, message):
    with pytest.raises(ConfigError) as error:
        parse_config(text)
    assert str(error.value).startswith(message), str(error.value)
