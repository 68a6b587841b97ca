//! Offsets of kernel structure members, read from the kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! The probes read three members the tracepoints do not hand over (`task_struct.exit_code`,
//! `task_struct.mm`, `mm_struct.arg_start/arg_end`); their offsets change with the kernel's
//! configuration. aya parses BTF but keeps its type accessors private, and the probes are built
//! without CO-RE relocations, so this reads the few offsets once per host, when the shared
//! programs are loaded. Only the type section's layout is needed: kinds, names, members.

use std::path::Path;

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
/// Kinds that only qualify another type: typedef, volatile, const, restrict, type tag.
const QUALIFIERS: [u32; 5] = [8, 9, 10, 11, 18];

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("not BTF data or truncated: {0}")]
    Malformed(&'static str),
    #[error("kernel BTF has no member `{member}` in `struct {strukt}`")]
    NoMember { strukt: String, member: String },
}

/// The parsed type section: where each type starts (type id N is `types[N - 1]`).
#[derive(Debug)]
pub struct KernelBtf {
    data: Vec<u8>,
    types: Vec<usize>,
    strings: usize,
    strings_len: usize,
}

/// A type's header: its name, kind, member count and kind flag.
struct TypeHeader {
    name: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    size_or_type: u32,
}

impl KernelBtf {
    pub fn from_sys_fs() -> Result<KernelBtf, BtfError> {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        let data = std::fs::read(path).map_err(|source| BtfError::Read { path: path.display().to_string(), source })?;
        KernelBtf::parse(data)
    }

    pub fn parse(data: Vec<u8>) -> Result<KernelBtf, BtfError> {
        let u32_at = |at: usize| -> Result<u32, BtfError> {
            let b = data.get(at..at + 4).ok_or(BtfError::Malformed("header"))?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        if data.get(..2).map(|m| u16::from_le_bytes([m[0], m[1]])) != Some(MAGIC) {
            return Err(BtfError::Malformed("magic (big-endian BTF is not read)"));
        }
        let header_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let start = header_len + type_off;
        let end = start + type_len;
        if end > data.len() || header_len + str_off + str_len > data.len() {
            return Err(BtfError::Malformed("section bounds"));
        }
        let mut btf = KernelBtf { data, types: Vec::new(), strings: header_len + str_off, strings_len: str_len };
        let mut at = start;
        while at < end {
            btf.types.push(at);
            at += 12 + btf.header(at)?.extra_len();
        }
        Ok(btf)
    }

    /// Byte offset of `member` in `struct strukt`, looking through anonymous structs and unions.
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let not_found = || BtfError::NoMember { strukt: strukt.into(), member: member.into() };
        let id = (1..=self.types.len() as u32)
            .find(|&id| {
                self.type_header(id).is_ok_and(|t| t.kind == KIND_STRUCT && t.vlen > 0 && self.name(t.name) == strukt)
            })
            .ok_or_else(not_found)?;
        self.find_member(id, member, 0).ok_or_else(not_found).map(|bits| bits / 8)
    }

    /// Bit offset of `member` in the struct or union `id`, plus `base`.
    fn find_member(&self, id: u32, member: &str, base: u32) -> Option<u32> {
        let at = *self.types.get(id.checked_sub(1)? as usize)?;
        let t = self.header(at).ok()?;
        for i in 0..t.vlen {
            let m = at + 12 + i * 12;
            let (name, ty, offset) = (self.u32(m)?, self.u32(m + 4)?, self.u32(m + 8)?);
            let bits = base + if t.kind_flag { offset & 0xff_ffff } else { offset };
            if name == 0 {
                let inner = self.resolve(ty)?;
                if let Some(found) = self.find_member(inner, member, bits) {
                    return Some(found);
                }
            } else if self.name(name) == member {
                return Some(bits);
            }
        }
        None
    }

    /// Follows qualifiers and typedefs to a struct or union.
    fn resolve(&self, mut id: u32) -> Option<u32> {
        for _ in 0..16 {
            let t = self.type_header(id).ok()?;
            match t.kind {
                KIND_STRUCT | KIND_UNION => return Some(id),
                k if QUALIFIERS.contains(&k) => id = t.size_or_type,
                _ => return None,
            }
        }
        None
    }

    fn type_header(&self, id: u32) -> Result<TypeHeader, BtfError> {
        let at = id.checked_sub(1).and_then(|i| self.types.get(i as usize)).ok_or(BtfError::Malformed("type id"))?;
        self.header(*at)
    }

    fn header(&self, at: usize) -> Result<TypeHeader, BtfError> {
        let word = |i| self.u32(at + i).ok_or(BtfError::Malformed("type"));
        let info = word(4)?;
        Ok(TypeHeader {
            name: word(0)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: word(8)?,
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let b = self.data.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&self, offset: u32) -> &str {
        let start = self.strings + offset as usize;
        let end = self.strings + self.strings_len;
        let bytes = self.data.get(start..end).unwrap_or_default();
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..len]).unwrap_or_default()
    }
}

impl TypeHeader {
    /// Bytes that follow the 12-byte header, by kind (the kernel's `btf_type_size`).
    fn extra_len(&self) -> usize {
        match self.kind {
            1 | 14 | 17 => 4,             // int, var, decl tag
            3 => 12,                      // array
            4 | 5 | 15 => 12 * self.vlen, // struct, union, datasec
            6 | 13 => 8 * self.vlen,      // enum, func proto
            19 => 12 * self.vlen,         // enum64
            _ => 0,                       // ptr, fwd, typedef, qualifiers, func, float, type tag
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A struct `outer { int a; union { int b; struct { int c; int d; }; }; }` by hand.
    fn tiny() -> Vec<u8> {
        let strings = b"\0outer\0a\0b\0c\0d\0int\0";
        let name = |s: &str| {
            let hay = std::str::from_utf8(strings).unwrap();
            hay.find(&format!("\0{s}\0")).unwrap() as u32 + 1
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| words.iter().for_each(|w| types.extend_from_slice(&w.to_le_bytes()));
        push(&[name("int"), 1 << 24, 4, 32]); // 1: int
        push(&[0, (KIND_STRUCT << 24) | 2, 8, name("c"), 1, 0, name("d"), 1, 32]); // 2: anon struct
        push(&[0, (KIND_UNION << 24) | 2, 8, name("b"), 1, 0, 0, 2, 0]); // 3: anon union
        push(&[name("outer"), (KIND_STRUCT << 24) | 2, 12, name("a"), 1, 0, 0, 3, 32]); // 4: outer
        let mut data = Vec::new();
        data.extend_from_slice(&MAGIC.to_le_bytes());
        data.extend_from_slice(&[1, 0]);
        for w in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            data.extend_from_slice(&w.to_le_bytes());
        }
        data.extend_from_slice(&types);
        data.extend_from_slice(strings);
        data
    }

    #[test]
    fn members_are_found_through_anonymous_structs_and_unions() {
        let btf = KernelBtf::parse(tiny()).unwrap();
        assert_eq!(btf.member_offset("outer", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("outer", "b").unwrap(), 4);
        assert_eq!(btf.member_offset("outer", "c").unwrap(), 4);
        assert_eq!(btf.member_offset("outer", "d").unwrap(), 8);
        assert!(btf.member_offset("outer", "e").is_err());
        assert!(btf.member_offset("inner", "a").is_err());
    }

    #[test]
    fn truncated_data_is_an_error_not_a_panic() {
        let data = tiny();
        for len in 0..data.len() {
            let _ = KernelBtf::parse(data[..len].to_vec());
        }
    }

    #[test]
    fn this_kernel_has_the_members_the_probes_read() {
        let Ok(btf) = KernelBtf::from_sys_fs() else {
            eprintln!("skipped: no readable /sys/kernel/btf/vmlinux on this host");
            return;
        };
        for (s, m) in [("task_struct", "exit_code"), ("task_struct", "mm"), ("mm_struct", "arg_start")] {
            let off = btf.member_offset(s, m).unwrap();
            assert!(off > 0 && off < 16384, "{s}.{m} at {off}");
        }
    }
}
