//! The session layer: the job gets its own session and process group (no
//! controlling terminal, so it cannot push keystrokes into the TUI's
//! terminal), dies with the host (`PR_SET_PDEATHSIG`), and inherits only
//! stdin (`/dev/null`), stdout and stderr (`close_range` marks everything
//! else close-on-exec).

use super::spec::Spec;
use crate::sandbox::PrepareError;
use crate::sandbox::layer::{Job, Layer};
use crate::sandbox::report::{EnforcementReport, Item, ItemKind};
use crate::sandbox::unix::report_session;

pub(crate) struct Session;

impl Layer for Session {
    type Outcome = ();

    fn predict(&self, _job: &mut Job<'_>) {}

    fn apply(&self, job: &mut Job<'_>, spec: &mut Spec) -> Result<(), PrepareError> {
        spec.new_session = !job.support.keep_session;
        spec.parent_death_signal = Some(libc::SIGKILL);
        spec.only_stdio = true;
        Ok(())
    }

    fn report(&self, job: &Job<'_>, _: &(), report: &mut EnforcementReport) {
        report_session(report);
        if job.support.keep_session {
            // The testing aid `HostBuilder::without_session`.
            report.items.retain(|i| i.kind != ItemKind::Session);
            report.push(Item::not_enforced(
                ItemKind::Session,
                "the job keeps the host's session and controlling terminal (testing aid `without_session`)",
            ));
        }
        report.push(Item::enforced(
            ItemKind::ParentDeath,
            "dies with host",
            "SIGKILL if the host dies",
        ));
    }
}
