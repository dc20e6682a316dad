//! Bounds-checked access to a guest's linear memory. Guest pointers and
//! sizes are wasm32 values: any `i32` is read as a `u32`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds;

fn range(mem_len: usize, ptr: u32, len: u32) -> Result<std::ops::Range<usize>, OutOfBounds> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(OutOfBounds)?;
    if end > mem_len {
        return Err(OutOfBounds);
    }
    Ok(start..end)
}

pub fn slice(mem: &[u8], ptr: u32, len: u32) -> Result<&[u8], OutOfBounds> {
    Ok(&mem[range(mem.len(), ptr, len)?])
}

pub fn slice_mut(mem: &mut [u8], ptr: u32, len: u32) -> Result<&mut [u8], OutOfBounds> {
    let range = range(mem.len(), ptr, len)?;
    Ok(&mut mem[range])
}

/// Checks that `len` bytes at `ptr` exist, without touching them.
pub fn check(mem: &[u8], ptr: u32, len: u32) -> Result<(), OutOfBounds> {
    range(mem.len(), ptr, len).map(|_| ())
}

pub fn read_u32(mem: &[u8], ptr: u32) -> Result<u32, OutOfBounds> {
    let bytes = slice(mem, ptr, 4)?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

pub fn write_u32(mem: &mut [u8], ptr: u32, value: u32) -> Result<(), OutOfBounds> {
    slice_mut(mem, ptr, 4)?.copy_from_slice(&value.to_le_bytes());
    Ok(())
}

pub fn write_u64(mem: &mut [u8], ptr: u32, value: u64) -> Result<(), OutOfBounds> {
    slice_mut(mem, ptr, 8)?.copy_from_slice(&value.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let mut mem = vec![0u8; 16];
        assert!(slice(&mem, 0, 16).is_ok());
        assert!(slice(&mem, 16, 0).is_ok());
        assert_eq!(slice(&mem, 16, 1), Err(OutOfBounds));
        assert_eq!(slice(&mem, u32::MAX, 2), Err(OutOfBounds));
        assert_eq!(slice(&mem, 1, u32::MAX), Err(OutOfBounds));
        assert_eq!(write_u32(&mut mem, 13, 1), Err(OutOfBounds));
        write_u32(&mut mem, 12, 0x0403_0201).unwrap();
        assert_eq!(&mem[12..], &[1, 2, 3, 4]);
        assert_eq!(read_u32(&mem, 12), Ok(0x0403_0201));
        write_u64(&mut mem, 8, u64::MAX).unwrap();
        assert_eq!(write_u64(&mut mem, 9, 0), Err(OutOfBounds));
        assert_eq!(check(&mem, 0, 17), Err(OutOfBounds));
    }
}
