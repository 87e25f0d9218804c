//! F1 (Art. 8): the provincial office pays for the lines; the host unit pays for services,
//! decoration and other services. These are defaults for each cost entry's payer; an entry
//! may name another payer where the units agree so.

labelled_enum! {
    /// What a cost entry of a meeting is for.
    pub enum CostCategory {
        Lines => "lines", "Transmission lines", "Đường truyền";
        Services => "services", "Services", "Dịch vụ";
        Decoration => "decoration", "Decoration", "Trang trí";
        Other => "other", "Other services", "Dịch vụ khác";
    }
}

labelled_enum! {
    /// Who pays a cost entry.
    pub enum Payer {
        ProvincialOffice => "provincial_office", "Provincial People's Committee office", "Văn phòng UBND tỉnh";
        HostUnit => "host_unit", "Host unit", "Đơn vị chủ trì";
    }
}

impl CostCategory {
    /// The payer Art. 8 assigns to this category.
    pub fn default_payer(self) -> Payer {
        match self {
            CostCategory::Lines => Payer::ProvincialOffice,
            CostCategory::Services | CostCategory::Decoration | CostCategory::Other => {
                Payer::HostUnit
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_payers() {
        let cases = [
            (CostCategory::Lines, Payer::ProvincialOffice),
            (CostCategory::Services, Payer::HostUnit),
            (CostCategory::Decoration, Payer::HostUnit),
            (CostCategory::Other, Payer::HostUnit),
        ];
        assert_eq!(cases.len(), CostCategory::ALL.len());
        for (category, payer) in cases {
            assert_eq!(category.default_payer(), payer, "{category}");
        }
        assert_eq!(Payer::parse("host_unit"), Some(Payer::HostUnit));
        assert_eq!(CostCategory::Lines.label_vi(), "Đường truyền");
    }
}
