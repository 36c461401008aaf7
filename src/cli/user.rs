//! User account commands: `user add|update|disable`. They write the same `user.create` and
//! `user.update` entries as `import users`, decided as `manage_users` on the system once
//! the ledger has user accounts (the very first account is added without policy, like a
//! first `import users`). Exit 0 done, 1 refused (recorded), 2 bad input or unknown user.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use djaudit::ledger::Ledger;
use djaudit::policy::enforce::{write_user_change, Enforced, UserChange, UserFields};
use djaudit::records::model::Role;

use super::records::{access, denied, AsArgs};
use super::{CliError, CmdResult};

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user account.
    Add(AddArgs),
    /// Change the name, role, org or member record of a user account.
    Update(UpdateArgs),
    /// Disable a user account: every later request by it is refused (and recorded).
    Disable(DisableArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The account id.
    #[arg(long)]
    pub id: String,
    /// The display name.
    #[arg(long)]
    pub name: String,
    /// org_dept, provider, member, sysadmin, security_admin or auditor (or a Chinese name).
    #[arg(long, value_parser = parse_role)]
    pub role: Role,
    /// The org the account belongs to.
    #[arg(long, value_name = "ORG_ID")]
    pub org: Option<String>,
    /// For role `member`: the member record that is theirs.
    #[arg(long, value_name = "MEMBER_ID")]
    pub member: Option<String>,
    #[command(flatten)]
    pub who: AsArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The account id.
    #[arg(long)]
    pub id: String,
    /// A new display name.
    #[arg(long)]
    pub name: Option<String>,
    /// A new role.
    #[arg(long, value_parser = parse_role)]
    pub role: Option<Role>,
    /// A new org.
    #[arg(long, value_name = "ORG_ID")]
    pub org: Option<String>,
    /// A new member record.
    #[arg(long, value_name = "MEMBER_ID")]
    pub member: Option<String>,
    #[command(flatten)]
    pub who: AsArgs,
}

#[derive(Debug, Args)]
pub struct DisableArgs {
    /// The account id.
    #[arg(long)]
    pub id: String,
    #[command(flatten)]
    pub who: AsArgs,
}

pub fn user(data: &Path, c: UserCommand) -> CmdResult {
    let (change, who) = match c {
        UserCommand::Add(a) => (
            UserChange::Add(UserFields {
                user_id: a.id,
                name: Some(a.name),
                role: Some(a.role),
                org_id: a.org,
                member_id: a.member,
            }),
            a.who,
        ),
        UserCommand::Update(a) => (
            UserChange::Update(UserFields {
                user_id: a.id,
                name: a.name,
                role: a.role,
                org_id: a.org,
                member_id: a.member,
            }),
            a.who,
        ),
        UserCommand::Disable(a) => (UserChange::Disable(a.id), a.who),
    };
    let mut ledger = Ledger::open(data)?;
    let access = access(&mut ledger, &who, "cli")?;
    let appended = match access.enforcer(&ledger)? {
        None => {
            let mut w = ledger.write()?;
            let appended = write_user_change(&mut w, &change, access.actor())?;
            if appended.is_some() {
                w.commit()?;
            }
            appended
        }
        Some(e) => match e.change_user(&mut ledger, &change)? {
            Enforced::Allowed { value, .. } => value,
            Enforced::Denied(d) => return denied(&mut ledger, &d, "nothing changed"),
        },
    };
    let id = change.user_id();
    match appended {
        Some(a) => {
            let cp = ledger.checkpoint().map_err(CliError::from)?;
            println!(
                "user {} `{id}`: entry {}; checkpoint at size {}",
                change.verb(),
                a.seq,
                cp.size
            );
        }
        None => println!("user `{id}` unchanged; no entries appended"),
    }
    Ok(ExitCode::SUCCESS)
}
