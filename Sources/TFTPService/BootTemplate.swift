/// The built-in `boot.ipxe`, served when the root has none: it asks the HTTP boot service for
/// the machine's profile and retries every 3 s until it answers. A profile that returns (the
/// boot-local profile on a machine without a disk) hands the machine back to its firmware
/// instead of asking again. `${…}` is iPXE's, `{{…}}` mustache's. The MAC goes as `hexhyp` (`52-54-00-…`): Debian's 2019 iPXE turns
/// `${net0/mac:uristring}` into the MAC's raw bytes, which a real VM showed as `macs=RT`.
public enum BootTemplate {
    public static let text = """
        #!ipxe
        # RackBus: ask the HTTP boot service what this machine should boot.
        :retry
        chain --autofree {{bootURL}}/api/current/profiles?macs=${net0/mac:hexhyp}&ips=${net0/ip} || goto wait
        exit
        :wait
        echo RackBus: the profile service did not answer; retrying in 3 s
        sleep 3
        goto retry

        """
}
