/// The templates RackBus ships, by name. A file of the same name in the templates directory
/// (`RACKBUS_HTTP_TEMPLATES`) replaces one; other files there add templates.
///
/// Values: `{{bootURL}}`, `{{apiBase}}` (`bootURL/api/current`), `{{nodeId}}`, `{{macaddress}}`
/// (the request's first MAC), `{{profilesURL}}` (the profiles URL for the request's MACs),
/// `{{options.x}}` (the task's properties or the node's boot-settings options) and `{{node.x}}`
/// (the node: `node.name`, `node.id`, …). Rendered as text: nothing is HTML-escaped.
public enum BuiltInTemplates {
    public static let all: [String: String] = [
        BootTemplateName.bootLocal: bootLocal,
        BootTemplateName.wait: wait,
        BootTemplateName.ignore: ignore,
        BootTemplateName.discovery: discovery,
        BootTemplateName.catalogStored: catalogStored,
        "install-debian.ipxe": installDebian,
        "preseed.cfg": preseed,
    ]

    /// The end-to-end VM test waits for the echo line on the serial console.
    static let bootLocal = """
        #!ipxe
        echo RackBus: node {{nodeId}} boots from its local disk
        sanboot --no-describe --drive 0x80 || exit

        """

    /// The node has a graph but no task with a profile yet: ask again in a moment. A failed
    /// chain exits with an error, so that the script that chained here (`boot.ipxe`, the
    /// discovery report) retries instead of handing the machine back to its firmware.
    static let wait = """
        #!ipxe
        echo RackBus: waiting for a task for node {{nodeId}}
        sleep 3
        chain {{profilesURL}} || exit 1

        """

    static let ignore = """
        #!ipxe
        echo RackBus does not provision this machine ({{macaddress}}): trying the next boot device
        exit

        """

    /// The profile of `Graph.Discovery`'s first task. Debian's 2019 iPXE has no `params`
    /// command, so the report is a query string.
    static let discovery = """
        #!ipxe
        echo RackBus: discovering node {{nodeId}}
        :report
        chain {{apiBase}}/catalogs/smbios?macs=${net0/mac:hexhyp}&manufacturer=${manufacturer:uristring}&product=${product:uristring}&serial=${serial:uristring}&uuid=${uuid}&asset=${asset:uristring}&platform=${platform:uristring} || goto retry
        exit
        :retry
        echo RackBus: the report failed, retrying in 5 seconds
        sleep 5
        goto report

        """

    /// The answer to the discovery report: back to the profiles route for this MAC.
    static let catalogStored = """
        #!ipxe
        echo RackBus: catalog stored for node {{nodeId}}
        sleep 1
        chain {{profilesURL}} || exit 1

        """

    /// An example install profile: Debian's netboot installer from `/common/debian/`, preseeded.
    static let installDebian = """
        #!ipxe
        echo RackBus: installing Debian on node {{nodeId}}
        kernel {{bootURL}}/common/debian/linux auto=true priority=critical url={{apiBase}}/templates/preseed.cfg?nodeId={{nodeId}} netcfg/choose_interface={{macaddress}} hostname={{#options.hostname}}{{options.hostname}}{{/options.hostname}}{{^options.hostname}}{{nodeId}}{{/options.hostname}} console=ttyS0,115200n8
        initrd {{bootURL}}/common/debian/initrd.gz
        boot || exit

        """

    /// An example install template: a minimal Debian preseed from the node and its options.
    static let preseed = """
        # RackBus preseed for node {{nodeId}} ({{node.name}})
        d-i debian-installer/locale string {{#options.locale}}{{options.locale}}{{/options.locale}}{{^options.locale}}en_US.UTF-8{{/options.locale}}
        d-i keyboard-configuration/xkb-keymap select us
        d-i netcfg/get_hostname string {{#options.hostname}}{{options.hostname}}{{/options.hostname}}{{^options.hostname}}{{nodeId}}{{/options.hostname}}
        d-i netcfg/get_domain string {{#options.domain}}{{options.domain}}{{/options.domain}}{{^options.domain}}local{{/options.domain}}
        d-i mirror/country string manual
        d-i mirror/http/hostname string {{#options.mirror}}{{options.mirror}}{{/options.mirror}}{{^options.mirror}}deb.debian.org{{/options.mirror}}
        d-i mirror/http/directory string /debian
        d-i passwd/root-login boolean true
        d-i passwd/make-user boolean false
        d-i passwd/root-password-crypted password {{options.rootPasswordHash}}
        d-i partman-auto/method string regular
        d-i partman-auto/choose_recipe select atomic
        d-i partman/confirm_write_new_label boolean true
        d-i partman/choose_partition select finish
        d-i partman/confirm boolean true
        d-i partman/confirm_nooverwrite boolean true
        d-i pkgsel/include string openssh-server
        d-i grub-installer/bootdev string default
        d-i finish-install/reboot_in_progress note

        """
}
