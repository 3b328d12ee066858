//! `[network]`: the TCP ports a job may connect to and bind.

use crate::policy::diagnostic::Code;
use crate::policy::model::Sourced;
use crate::policy::section::Section;

/// Network rules of one level.
#[derive(Debug, Clone, Default)]
pub struct NetworkLayer {
    pub connect: Vec<Sourced<u16>>,
    pub bind: Vec<Sourced<u16>>,
    pub unrestricted: Option<Sourced<bool>>,
}

impl NetworkLayer {
    pub(crate) fn read(s: &mut Section<'_, '_, '_>) -> Self {
        let net = Self {
            connect: s.ports("connect"),
            bind: s.ports("bind"),
            unrestricted: s.flag("unrestricted"),
        };
        if let Some(unrestricted) = &net.unrestricted
            && unrestricted.value
            && (!net.connect.is_empty() || !net.bind.is_empty())
        {
            let span = s.reader().span(&unrestricted.key);
            s.reader().warning(
                Code::NoEffect,
                span,
                format!(
                    "`{}` is true, so the port lists beside it have no effect",
                    unrestricted.key
                ),
            );
        }
        net
    }
}
