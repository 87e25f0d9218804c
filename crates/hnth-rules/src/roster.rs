//! S3 (Art. 10): every site keeps one or two trained technicians and reports them to the
//! provincial office. A site with none, with more than two, or with untrained staff is flagged.

use crate::booking::SiteId;
use crate::{RuleId, Violation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Art. 10: "1–2 trained technicians" per site.
pub const MAX_TECHNICIANS_PER_SITE: usize = 2;

/// What the roster rule needs to know about a technician on a site's roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Technician {
    pub site: SiteId,
    pub name: String,
    pub trained: bool,
}

/// A roster problem at one site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RosterFlag {
    NoTechnician { site: SiteId },
    TooManyTechnicians { site: SiteId, count: usize },
    Untrained { site: SiteId, name: String },
}

impl RosterFlag {
    pub fn site(&self) -> SiteId {
        match self {
            RosterFlag::NoTechnician { site }
            | RosterFlag::TooManyTechnicians { site, .. }
            | RosterFlag::Untrained { site, .. } => *site,
        }
    }

    /// The S3 flag, naming the site with `site_name`.
    pub fn violation(&self, site_name: &str) -> Violation {
        let rule = RuleId::S3;
        let (en_art, vi_art) = (rule.article_en(), rule.article_vi());
        match self {
            RosterFlag::NoTechnician { .. } => Violation::new(
                rule,
                "no_technician",
                format!("Site {site_name} has no technician on its roster ({en_art})."),
                format!("Điểm cầu {site_name} chưa có cán bộ kỹ thuật ({vi_art})."),
            ),
            RosterFlag::TooManyTechnicians { count, .. } => Violation::new(
                rule,
                "too_many_technicians",
                format!("Site {site_name} has {count} technicians; the regulation asks for 1 or 2 ({en_art})."),
                format!("Điểm cầu {site_name} có {count} cán bộ kỹ thuật; quy chế quy định 1 đến 2 người ({vi_art})."),
            ),
            RosterFlag::Untrained { name, .. } => Violation::new(
                rule,
                "untrained_technician",
                format!("Technician {name} of site {site_name} has not been trained ({en_art})."),
                format!("Cán bộ kỹ thuật {name} của điểm cầu {site_name} chưa được tập huấn ({vi_art})."),
            ),
        }
    }
}

/// S3: the flags for `sites` and for any other site a technician is on, by site id; at each
/// site the count comes before the untrained technicians (in roster order).
pub fn roster_flags(sites: &[SiteId], technicians: &[Technician]) -> Vec<RosterFlag> {
    let mut by_site: BTreeMap<SiteId, Vec<&Technician>> =
        sites.iter().map(|s| (*s, Vec::new())).collect();
    for t in technicians {
        by_site.entry(t.site).or_default().push(t);
    }
    let mut flags = Vec::new();
    for (site, staff) in by_site {
        if staff.is_empty() {
            flags.push(RosterFlag::NoTechnician { site });
        } else if staff.len() > MAX_TECHNICIANS_PER_SITE {
            flags.push(RosterFlag::TooManyTechnicians {
                site,
                count: staff.len(),
            });
        }
        let untrained = staff.iter().filter(|t| !t.trained);
        flags.extend(untrained.map(|t| RosterFlag::Untrained {
            site,
            name: t.name.clone(),
        }));
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tech(site: SiteId, name: &str, trained: bool) -> Technician {
        Technician {
            site,
            name: name.into(),
            trained,
        }
    }

    #[test]
    fn flags() {
        let cases: [(&str, Vec<Technician>, Vec<RosterFlag>); 6] = [
            ("none", vec![], vec![RosterFlag::NoTechnician { site: 1 }]),
            ("one trained", vec![tech(1, "An", true)], vec![]),
            (
                "two trained",
                vec![tech(1, "An", true), tech(1, "Bình", true)],
                vec![],
            ),
            (
                "three",
                vec![
                    tech(1, "An", true),
                    tech(1, "Bình", true),
                    tech(1, "Chi", true),
                ],
                vec![RosterFlag::TooManyTechnicians { site: 1, count: 3 }],
            ),
            (
                "one untrained",
                vec![tech(1, "An", true), tech(1, "Bình", false)],
                vec![RosterFlag::Untrained {
                    site: 1,
                    name: "Bình".into(),
                }],
            ),
            (
                "three, two untrained",
                vec![
                    tech(1, "An", false),
                    tech(1, "Bình", true),
                    tech(1, "Chi", false),
                ],
                vec![
                    RosterFlag::TooManyTechnicians { site: 1, count: 3 },
                    RosterFlag::Untrained {
                        site: 1,
                        name: "An".into(),
                    },
                    RosterFlag::Untrained {
                        site: 1,
                        name: "Chi".into(),
                    },
                ],
            ),
        ];
        for (name, technicians, expected) in cases {
            assert_eq!(roster_flags(&[1], &technicians), expected, "{name}");
        }
    }

    #[test]
    fn every_site_is_checked_in_order() {
        let technicians = [tech(3, "An", true), tech(5, "Bình", true)];
        let flags = roster_flags(&[2, 3, 1], &technicians);
        let sites: Vec<_> = flags.iter().map(RosterFlag::site).collect();
        assert_eq!(sites, [1, 2]); // site 5 is not listed but is fine; 1 and 2 have nobody.
    }

    #[test]
    fn messages() {
        let v = RosterFlag::Untrained {
            site: 1,
            name: "Bình".into(),
        }
        .violation("UBND huyện Hồng Dân");
        assert_eq!(
            (v.rule, v.article, v.code),
            (RuleId::S3, "10", "untrained_technician")
        );
        assert_eq!(
            v.vi,
            "Cán bộ kỹ thuật Bình của điểm cầu UBND huyện Hồng Dân chưa được tập huấn (Điều 10)."
        );
        let v = RosterFlag::TooManyTechnicians { site: 1, count: 3 }.violation("X");
        assert_eq!(
            v.en,
            "Site X has 3 technicians; the regulation asks for 1 or 2 (Art. 10)."
        );
    }
}
