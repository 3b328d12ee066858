//! Platforms without observation (everything but Linux): no job carries an
//! observer, so the host's observation code compiles to nothing there.

use crate::observe::{GrantContext, Observed};

/// Never constructed on this platform.
#[derive(Debug)]
pub(crate) enum Observer {}

/// What a service round left (see the Linux observer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)]
pub(crate) enum ObserverState {
    Drained,
    MoreLater,
    Closed,
}

#[allow(dead_code)]
impl Observer {
    pub fn register(&mut self, _: &mio::Registry, _: mio::Token) -> std::io::Result<()> {
        match *self {}
    }

    pub fn deregister(&mut self, _: &mio::Registry) {
        match *self {}
    }

    pub fn service(&mut self, _: &mut Observed) -> ObserverState {
        match *self {}
    }

    pub fn context(&self) -> &GrantContext {
        match *self {}
    }
}
