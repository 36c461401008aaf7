-- Projection of party records (derived only from ledger entries; see DESIGN §1).
-- Conventions: dates 'YYYY-MM-DD' TEXT, months 'YYYY-MM' TEXT, money INTEGER fen (分),
-- booleans INTEGER 0/1, enums their canonical English value, NULL when absent.
-- `last_seq` is the ledger seq of the entry that last wrote the row.
CREATE TABLE IF NOT EXISTS org (
    org_id            TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('committee','general_branch','branch')),
    parent_id         TEXT,
    established_date  TEXT,
    has_committee     INTEGER,
    secretary_id      TEXT,
    dissolved_date    TEXT,
    last_seq          INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS org_parent ON org(parent_id);

CREATE TABLE IF NOT EXISTS member (
    member_id                  TEXT PRIMARY KEY,
    name                       TEXT,
    gender                     TEXT CHECK (gender IN ('male','female')),
    ethnicity                  TEXT,
    birth_date                 TEXT,
    id_number                  TEXT,
    phone                      TEXT,
    education                  TEXT,
    org_id                     TEXT,
    category                   TEXT CHECK (category IN ('full','probationary')),
    status                     TEXT CHECK (status IN ('active','transferred_out','deceased','removed','lost_contact')),
    status_date                TEXT,
    application_date           TEXT,
    activist_date              TEXT,
    candidate_date             TEXT,
    admission_date             TEXT,
    full_date                  TEXT,
    probation_extension_months INTEGER,
    introducers                TEXT,   -- member ids joined by ';' in file order
    employment                 TEXT CHECK (employment IN ('employed','retired','student','unemployed','farmer')),
    monthly_income             INTEGER, -- fen
    last_seq                   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS member_org ON member(org_id);
CREATE INDEX IF NOT EXISTS member_id_number ON member(id_number);

-- dues_id = '<member_id>/<month>' for the first row of a member and month in a file,
-- '<member_id>/<month>#2', '#3', … for further rows of the same member and month.
CREATE TABLE IF NOT EXISTS dues (
    dues_id      TEXT PRIMARY KEY,
    member_id    TEXT NOT NULL,
    month        TEXT NOT NULL,
    base_income  INTEGER,          -- fen
    amount       INTEGER NOT NULL, -- fen
    paid_date    TEXT,
    last_seq     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dues_member_month ON dues(member_id, month);

-- meeting_id = '<org_id>/<date>/<kind>' (+ '#2', … for further rows with the same key).
CREATE TABLE IF NOT EXISTS meeting (
    meeting_id   TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('member_meeting','committee_meeting','group_meeting','lecture','theme_day','org_life','appraisal')),
    date         TEXT NOT NULL,
    attendees    INTEGER,
    topic        TEXT,
    last_seq     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS meeting_org_date ON meeting(org_id, date);

-- transfer_id = '<member_id>/<date>' (+ '#2', …).
CREATE TABLE IF NOT EXISTS transfer (
    transfer_id  TEXT PRIMARY KEY,
    member_id    TEXT NOT NULL,
    from_org     TEXT,
    to_org       TEXT,
    date         TEXT NOT NULL,
    last_seq     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS transfer_member ON transfer(member_id, date);

CREATE TABLE IF NOT EXISTS user (
    user_id      TEXT PRIMARY KEY,
    name         TEXT,
    role         TEXT NOT NULL CHECK (role IN ('org_dept','provider','member','sysadmin','security_admin','auditor')),
    org_id       TEXT,
    member_id    TEXT,             -- for role 'member': the member record that is theirs
    disabled     INTEGER NOT NULL DEFAULT 0,
    last_seq     INTEGER NOT NULL
) WITHOUT ROWID;
