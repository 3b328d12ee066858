//! `[network]`: the TCP ports a job may connect to and bind, and which
//! other kinds of socket it may create at all.

use crate::policy::diagnostic::Code;
use crate::policy::model::Sourced;
use crate::policy::section::Section;
use crate::policy::template::PathTemplate;

/// Network rules of one level.
#[derive(Debug, Clone, Default)]
pub struct NetworkLayer {
    /// TCP ports the job may connect to.
    pub connect: Vec<Sourced<u16>>,
    /// TCP ports the job may bind.
    pub bind: Vec<Sourced<u16>>,
    /// No network restriction at all (every port, every socket family).
    pub unrestricted: Option<Sourced<bool>>,
    /// UDP sockets (any port).
    pub udp: Option<Sourced<bool>>,
    /// `NETLINK_ROUTE` sockets.
    pub netlink_route: Option<Sourced<bool>>,
    /// Pathname UNIX sockets the job may connect to.
    pub unix: Vec<Sourced<PathTemplate>>,
    /// Any UNIX socket.
    pub unix_any: Option<Sourced<bool>>,
}

impl NetworkLayer {
    pub(crate) fn read(s: &mut Section<'_, '_, '_>) -> Self {
        let net = Self {
            connect: s.ports("connect"),
            bind: s.ports("bind"),
            unrestricted: s.flag("unrestricted"),
            udp: s.flag("udp"),
            netlink_route: s.flag("netlink_route"),
            unix: s.paths("unix"),
            unix_any: s.flag("unix_any"),
        };
        if let Some(unrestricted) = &net.unrestricted
            && unrestricted.value
            && (!net.connect.is_empty()
                || !net.bind.is_empty()
                || !net.unix.is_empty()
                || net.udp.is_some()
                || net.netlink_route.is_some()
                || net.unix_any.is_some())
        {
            let span = s.reader().span(&unrestricted.key);
            s.reader().warning(
                Code::NoEffect,
                span,
                format!(
                    "`{}` is true, so the ports and sockets granted beside it have no effect",
                    unrestricted.key
                ),
            );
        }
        net
    }
}
