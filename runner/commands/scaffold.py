"""What ``new`` writes: a commented campaign per provider type, and its data files.

Each provider type gets the region, clock, sample numbers and steps it suits (a
credits check where the type has credits, the report it can read); the rest of
the file is the same for all.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_FILE = "campaign.schema.json"


@dataclass(frozen=True)
class Kind:
    """One provider type's scaffold."""

    title: str  # as people name the service
    region: str
    timezone: str
    phones: tuple[str, ...]  # sample numbers the sandbox accepts (none ends in 99)
    names: tuple[str, ...]
    env: tuple[str, ...]  # the ${VARS} its credentials need
    providers: str  # the providers: block
    template: str  # the message's text (Jinja)
    steps: str  # the steps: block


_MAILUP = """\
  sms:                               # your name for it: steps refer to it
    type: mailup
    client_id: ${MAILUP_CLIENT_ID}   # OAuth2 client of the console API
    client_secret: ${MAILUP_CLIENT_SECRET}
    username: m12345                 # the console user
    password: ${MAILUP_PASSWORD}
    account_id: 12345                # account and SMS list of the send URL
    list_id: 2
    list_guid: 00000000-0000-0000-0000-000000000000
    list_secret: ${MAILUP_LIST_SECRET}
    sender: Acme                     # at most 11 letters and digits, certified
    # rate: 20/s                     # most calls per unit of time (default: its own)
    # concurrency: 8                 # most calls in flight at once
    # timeout: {connect: 5s, read: 30s}
    # retry: {attempts: 4, base_delay: 500ms, max_delay: 20s, max_total: 2m}
"""

_TELLODY = """\
  stats:                             # Tellody cannot send to numbers: it checks
    type: tellody                    # the credits and reads the statistics
    username: acme
    password: ${TELLODY_PASSWORD}
    unit: day                        # statistics by hour, day, week or month
"""

_MAILUP_STEPS = """\
  - id: credits                      # the account must cover every segment, +10%
    check_credits:
      provider: sms
      min: "segments('blast') * 1.1"

  - id: blast
    send: {provider: sms, template: message}
    # window: {hours: "09:00-20:00", days: [mon, tue, wed, thu, fri]}
    # max_failed: "5%"               # failures allowed before the step is not ok

  - id: delivery                     # MailUp's report has a status per recipient
    after: 10m                       # (--now starts it at once in a rehearsal)
    check_report:
      provider: sms
      for: blast
      every: 1m
      timeout: 1h
      expect: {delivered_ratio: 0.9}  # or max_failed, max_failed_ratio
"""

_SPANISH = "Hola {{ name | first_name }}, -20% en {{ vars.shop }} esta semana. Baja: STOP"

KINDS: dict[str, Kind] = {
    "mailup": Kind(
        title="MailUp",
        region="ES",
        timezone="Europe/Madrid",
        phones=("+34600000001", "600 000 002", "+34600000003", "+34600000004"),
        names=("Ana García", "José Martín", "Laura Fernández", "Pablo Ortega"),
        env=(
            "MAILUP_CLIENT_ID",
            "MAILUP_CLIENT_SECRET",
            "MAILUP_PASSWORD",
            "MAILUP_LIST_SECRET",
        ),
        providers=_MAILUP,
        template=_SPANISH,
        steps=_MAILUP_STEPS,
    ),
    "ogangi": Kind(
        title="Ogangi",
        region="VE",
        timezone="America/Caracas",
        phones=("+584121234501", "04121234502", "+584121234503", "+584121234504"),
        names=("Carmen Rojas", "Luis Alberto Díaz", "Andreína Mora", "José Blanco"),
        env=("OGANGI_PUBLIC_KEY", "OGANGI_PRIVATE_KEY"),
        providers="""\
  sms:                               # your name for it: steps refer to it
    type: ogangi
    base_url: https://workspace.example.com  # your workspace's URL, from Ogangi
    instance_id: 8                   # the workspace id, from Ogangi
    public_key: ${OGANGI_PUBLIC_KEY}
    private_key: ${OGANGI_PRIVATE_KEY}   # signs each call; never sent
    sender: "2020"                   # the short or long code it is sent from
    mo_keyword: "^(STOP|BAJA)\\\\b.*"  # replies counted as opt-outs
    # method: send_mt                # Campaign Manager's sendMT (default send_sms)
    # rate: 10/s                     # most calls per unit of time (default: its own)
    # concurrency: 8                 # most calls in flight at once
""",
        template="Hola {{ name | first_name }}, {{ vars.shop }} le recuerda su cita "
        "de mañana. Para no recibir más mensajes responda BAJA.",
        steps="""\
  - id: blast
    send: {provider: sms, template: message}
    # window: {hours: "08:00-19:00", days: [mon, tue, wed, thu, fri]}

  - id: replies                      # Ogangi's report: the replies to the code
    after: 10m                       # (--now starts it at once in a rehearsal)
    check_report:
      provider: sms
      for: blast
      every: 1m
      timeout: 30m
      expect: {max_optout_ratio: 0.2}  # fail if more than 20% answered BAJA
""",
    ),
    "tatango": Kind(
        title="Tatango",
        region="US",
        timezone="America/Chicago",
        phones=("+12145550101", "(214) 555-0102", "+12145550103", "+12145550104"),
        names=("Jordan Miller", "Priya Patel", "Sam O'Connor", "Alex Kim"),
        env=("TATANGO_API_KEY",),
        providers="""\
  sms:                               # your name for it: steps refer to it
    type: tatango                    # 1,200 calls an hour, sends and polls together
    email: ops@example.com           # the login (HTTP Basic user)
    api_key: ${TATANGO_API_KEY}
    # phone_format: national         # US numbers as 10 digits (or international)
    # max_length: 160                # Tatango refuses longer texts
    # timeout: 20s
""",
        template="{{ vars.shop }}: hi {{ name | first_name }}, your order is ready "
        "for pickup. Reply STOP to opt out.",
        steps="""\
  - id: blast
    send: {provider: sms, template: message}
    # window: {hours: "09:00-20:00", days: [mon, tue, wed, thu, fri]}

  - id: momt                         # Tatango's MOMT report: sent and received
    after: 5m                        # (--now starts it at once in a rehearsal)
    check_report:
      provider: sms
      for: blast
      every: 10s
      timeout: 15m
""",
    ),
    "tellody": Kind(
        title="Tellody and MailUp",
        region="ES",
        timezone="Europe/Madrid",
        phones=("+34600000001", "600 000 002", "+34600000003", "+34600000004"),
        names=("Ana García", "José Martín", "Laura Fernández", "Pablo Ortega"),
        env=(
            "TELLODY_PASSWORD",
            "MAILUP_CLIENT_ID",
            "MAILUP_CLIENT_SECRET",
            "MAILUP_PASSWORD",
            "MAILUP_LIST_SECRET",
        ),
        providers=_TELLODY + _MAILUP,
        template=_SPANISH,
        steps="""\
  - id: credits                      # Tellody's account must cover every segment
    check_credits:
      provider: stats
      min: "segments('blast')"

  - id: blast
    send: {provider: sms, template: message}

  - id: stats                        # Tellody's statistics: SMS_SENT, OPTOUT, ...
    after: 10m                       # (--now starts it at once in a rehearsal)
    check_report:
      provider: stats
      for: blast
      timeout: 30m
      expect: {max_optout_ratio: 0.05}  # fail if more than 5% opted out
""",
    ),
}


def campaign_yaml(name: str, type_: str) -> str:
    """The campaign file ``new`` writes for ``name`` with a provider of ``type_``."""
    k = KINDS[type_]
    env = "\n".join(f"#   export {v}=..." for v in k.env)
    return f"""\
# yaml-language-server: $schema={SCHEMA_FILE}
#
# {name}: SMS through {k.title}, made by `campaign-runner new`.
# The schema beside it ({SCHEMA_FILE}) gives your editor completion, hover
# docs and errors as you type (VS Code's YAML extension and others).
#
# Edit the recipients ({name}-contacts.csv), the text (templates) and the
# provider's account, then:
#   campaign-runner validate {name}.yaml              # every problem, with its line
#   campaign-runner preview {name}.yaml               # the messages; nothing is sent
#   campaign-runner run {name}.yaml --sandbox --now   # a rehearsal on local emulators
#   campaign-runner run {name}.yaml                   # for real
#
# Credentials are ${{VAR}} references, read from the environment when it runs
# (never written here); a rehearsal needs none:
{env}
version: 1
{_pad("name: " + name)}# a slug: runs and the journal are keyed by it
description: A campaign made by campaign-runner new.
{_pad("timezone: " + k.timezone)}# naive datetimes, windows and cron use it
{_pad("default_region: " + k.region)}# how numbers without a country code are read
max_segments: 2               # a longer message is an error for that recipient
vars:                         # {{{{ vars.shop }}}} in the templates
  shop: Acme

providers:
{k.providers}
recipients:
  {_pad("file: " + name + "-contacts.csv", 28)}# a header row; columns are variables
  phone_field: phone
  on_invalid: skip            # a bad number is listed and skipped (or: fail)
  {_pad("exclude: " + name + "-optout.txt", 28)}# never sent to, whatever else says
  # where: "lang == 'es'"     # a Jinja expression over the row's fields

templates:                    # Jinja; a missing variable is an error, not ""
  message: "{k.template}"

steps:                        # in order; each at the time it says
{k.steps}
# For the daemon (campaign-runner daemon DIR): when to run it.
# schedule: {{at: "2030-01-15T10:00:00"}}   # or {{cron: "0 10 * * mon"}}

sandbox:                      # the emulators of a --sandbox rehearsal
  credits: 1000
  seed: 1
"""


def _pad(text: str, width: int = 30) -> str:
    """``text`` and spaces up to ``width``, at least one: a comment follows."""
    return text + " " * max(1, width - len(text))


def contacts_csv(type_: str) -> str:
    k = KINDS[type_]
    rows = [f'{phone},"{name}"' for phone, name in zip(k.phones, k.names, strict=True)]
    return "phone,name\n" + "\n".join(rows) + "\n"


def optout_txt(type_: str) -> str:
    return (
        "# Numbers that asked not to be contacted, one a line: never sent to.\n"
        f"{KINDS[type_].phones[-1]}\n"
    )
