#!/usr/bin/env bash
# doc-references.sh (make doc-references): fails when a doc, a "Neighbours" line or a code
# comment names a file or a symbol that does not exist (issue 13). It reads README.md and
# docs/*.md whole, and the comments of every source, header, assembly file, linker script,
# script and Makefile (`//`, `/* */`, `#`, Python docstrings), and checks:
#   path       a path under a top-level folder (Sources/, Tests/, docs/, boot/, include/,
#              linker/, Benchmarks/, .ci/, Examples/) exists, from the root or from the
#              citing file's folder; `$(ARCH)`, `$f`, `<arch>`, `*` and `XXXX` stand for
#              any part of a name, `{a,b}` for either. build/ and .build/ are outputs.
#              A relative path (`QuarryX86/X86Platform.swift`) must end some path.
#   file       a bare file name with a source extension (`SlabCache.swift`, quarry.h, or
#              `SlabCache+PerCPU`) exists somewhere in the tree.
#   neighbour  each name in a "Neighbours:" sentence, outside its parentheses, is a file,
#              a folder, the end of a path or a declared type: `SlabCache+Bulk`,
#              `HeapState`, `Kernel.swift`, `Quarry/Platform.swift`, `boot/isr_<arch>.S`.
#   map-entry  docs/design.md names every file of Sources/Quarry (`Name.swift`).
#   type, member, function, symbol  backticked names that look like Swift or C API names
#              (in the docs outside code blocks, and in comments): `Type.member` needs the
#              type declared and the member declared in it, an extension of it or a
#              protocol it conforms to; `.member`, `name(label:)` and a lowerCamelCase
#              `name` need a declaration (or, for C, a use in code) anywhere; labels given
#              must match a declaration's; `quarry_*`/`QUARRY_*` must appear in code, not
#              only in comments. Plain words and shell commands are not names. Without
#              backticks too: Type.member when Type is declared here, and quarry_/QUARRY_
#              names (`QUARRY_STUB_*`: some name starts so).
# Each broken reference is printed as `file:line: missing <kind> <name>`; exit status 1 if
# any. Tests/doc-references-test.sh checks this script on a small tree.
#
#   Tests/doc-references.sh [ROOT]           check the tree at ROOT (default: this repository)
#   DOC_REFERENCES_SKIP="docs/design.md"     skip these files (space-separated, from ROOT)
set -euo pipefail
script=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "${1:-$(dirname "$script")/..}"
exec perl -x "$script"
#!perl
#line 36
use strict;
use warnings;

my %skip = map { $_ => 1 } split ' ', ($ENV{DOC_REFERENCES_SKIP} // '');

# Names that are not Quarry's but are cited on purpose, each group with its reason. Add a
# name here only when it is not ours; a stale name of ours must be fixed where it is cited.
my %allowed = map { $_ => 1 } (
    # The Swift standard library, Synchronization and Foundation: the comments say how
    # Quarry uses them.
    qw(Int UInt32 BinaryInteger FixedWidthInteger StaticString InlineArray Atomic
       UnsafeMutablePointer Process max pointee rawValue),
    # C standard headers that quarry.h includes.
    qw(stddef.h stdint.h),
    # ELF sections (the linker scripts', and those integration.md says what to do with)
    # and the LLVM linker's name.
    qw(.bss .data .rodata .text .got .got.plt .eh_frame .swift_modhash
       .swift1_autolink_entries .linker-options ld.lld),
);
# Other allocators' names the docs compare with: mimalloc (mi_), Linux SLUB (kmem_).
my $foreign_prefix = qr/^(?:mi_|kmem_)/;

my $top = qr/(?:Sources|Tests|docs|boot|include|linker|Benchmarks|\.ci|Examples|build|\.build)/;
my $ext = qr/(?:swift|c|h|S|ld|md|sh|py|inc|modulemap|supp)/;
# Outputs and foreign files a doc may name in backticks: not looked for.
my $other_ext = qr/(?:o|a|so|elf|bin|map|dis|log|txt|json|swiftmodule|csv|png)/;

# The tree: every file and folder, less .git and the build outputs.
my (@files, %exists, %basename, %stem);
sub walk {
    my ($dir) = @_;
    opendir(my $dh, $dir eq '' ? '.' : $dir) or return;
    for my $name (sort grep { $_ ne '.' && $_ ne '..' } readdir $dh) {
        my $path = $dir eq '' ? $name : "$dir/$name";
        # .build* anywhere (SwiftPM scratch folders: .build, .build-asan, an example's .build).
        next if $path eq '.git' || $path eq 'build' || $name =~ /^\.build/ || $name eq '.swiftpm';
        $exists{$path} = 1;
        $basename{$name} = 1;
        (my $s = $name) =~ s/\.[^.]*$//;
        $stem{$s} = 1;
        if (-d $path && !-l $path) { walk($path) } else { push @files, $path }
    }
    closedir $dh;
}
walk('');
my @all_paths = sort keys %exists;

# How each file's comments are written; undef: not scanned.
sub style_of {
    my ($f) = @_;
    # The docs; docs/benchmarks/*.md are written by make bench (Benchmarks/report.py).
    return 'md' if $f =~ m{^(?:docs/)?[^/]+\.md$};
    return undef if $f =~ /\.md$/;
    # This check and its test cite broken names on purpose.
    return undef if $f =~ m{^Tests/doc-references[^/]*\.sh$};
    return undef if $f =~ m{^Tests/Fuzz/corpus/};
    return 'c' if $f =~ /\.(?:swift|c|h|S|ld|modulemap)$/;
    return 'py' if $f =~ /\.py$/;
    return 'hash' if $f =~ /\.(?:sh|inc|supp)$/ || $f =~ m{(?:^|/)Makefile[^/]*$} || $f =~ m{^\.ci/};
    return undef;
}

# Splits a file into comment text and code text, line by line.
sub split_file {
    my ($f, $style) = @_;
    open(my $fh, '<', $f) or die "$f: $!";
    my @lines = <$fh>;
    close $fh;
    my (@comment, @code);
    my $in_block = 0;    # inside /* */ (c) or """ (py)
    for my $i (0 .. $#lines) {
        my $line = $lines[$i];
        chomp $line;
        my ($com, $cod) = ('', '');
        if ($style eq 'md') {
            $com = $line;
        } elsif ($style eq 'c') {
            my $instr = '';
            my $n = length $line;
            for (my $j = 0; $j < $n; $j++) {
                my $ch = substr($line, $j, 1);
                my $two = substr($line, $j, 2);
                if ($in_block) {
                    if ($two eq '*/') { $in_block = 0; $j++; $com .= ' '; next }
                    $com .= $ch;
                } elsif ($instr ne '') {
                    $cod .= $ch;
                    if ($ch eq '\\') { $cod .= substr($line, $j + 1, 1); $j++ }
                    elsif ($ch eq $instr) { $instr = '' }
                } elsif ($two eq '//') {
                    $com .= substr($line, $j + 2);
                    last;
                } elsif ($two eq '/*') {
                    $in_block = 1; $j++;
                } elsif ($ch eq '"' || ($ch eq "'" && $f !~ /\.swift$/)) {
                    $instr = $ch; $cod .= $ch;
                } else {
                    $cod .= $ch;
                }
            }
        } else {    # hash and py: '#' at the start or after a blank, outside quotes
            if ($style eq 'py' && ($in_block || $line =~ /^\s*(?:[rbf]?)"""/)) {
                my $quotes = () = $line =~ /"""/g;
                $com = $line;
                $in_block = !$in_block if $quotes % 2;
            } else {
                my $instr = '';
                my $n = length $line;
                for (my $j = 0; $j < $n; $j++) {
                    my $ch = substr($line, $j, 1);
                    if ($instr ne '') {
                        if ($ch eq '\\' && $instr eq '"') { $j++; next }
                        $instr = '' if $ch eq $instr;
                    } elsif ($ch eq '"' || $ch eq "'") {
                        $instr = $ch;
                    } elsif ($ch eq '#' && ($j == 0 || substr($line, $j - 1, 1) =~ /[\s@;]/)) {
                        $com = substr($line, $j + 1);
                        $cod = substr($line, 0, $j);
                        last;
                    }
                }
                $cod = $line if $com eq '' && $cod eq '';
            }
        }
        push @comment, $com;
        push @code, $cod;
    }
    return (\@comment, \@code);
}

my (%comments, %code, %style);
for my $f (@files) {
    my $s = style_of($f) or next;
    $style{$f} = $s;
    my ($com, $cod) = split_file($f, $s);
    $comments{$f} = $com;
    $code{$f} = $cod;
}

# What the code declares (comments stripped): Swift types and members, function labels,
# and every word of C, assembly, Swift, scripts and Makefiles (for the C names).
my (%types, %members, %labels, %words, %type_members, %conforms, %alias, %modules);
for my $f (keys %code) {
    next if $style{$f} eq 'md';
    my $text = join "\n", @{ $code{$f} };
    $words{$_} = 1 for $text =~ /\b([A-Za-z_]\w*)\b/g;
    # Module and target names: `module CQuarryHeader`, `.target(name: "QuarryScenarios")`.
    $types{$1} = 1 while $f =~ /\.modulemap$/ && $text =~ /\bmodule\s+(\w+)/g;
    if ($f eq "Package.swift") { $types{$1} = $modules{$1} = 1 while $text =~ /\bname:\s*"(\w+)"/g }
    next unless $f =~ /\.swift$/;
    $types{$2} = 1 while $text =~ /\b(struct|enum|class|protocol|typealias|actor|associatedtype|extension)\s+(\w+)/g;
    # Nested type references in extensions: `extension Quarry.Reclaim` declares both.
    $types{$1} = 1 while $text =~ /\bextension\s+\w+\.(\w+)/g;
    $members{$1} = 1 while $text =~ /\b(?:func|var|let)\s+`?(\w+)/g;
    $members{$1} = 1 while $text =~ /\b(?:func)\s+([^\s(<]+)/g;    # operators
    $members{'init'} = 1, $members{'subscript'} = 1, $members{'deinit'} = 1;
    # Which type declares which member: the names declared directly in a type's body or in
    # one of its extensions ("Type" -> { member }), what each type conforms to, and what
    # each typealias stands for. `extension UnsafeMutablePointer where Pointee == CPUCache`
    # declares its members for CPUCache too.
    {
        my ($depth, @scopes, $pending, $inherits) = (0);
        while ($text =~ /(\b(?:struct|enum|class|protocol|extension|actor)\s+(?!func\b|var\b|let\b|subscript\b|init\b|static\b|override\b|final\b)[\w.]+|\b(?:func|var|let|typealias|associatedtype)\s+`?\w+|\b(?:init|subscript)\b|\bcase\s+[a-zA-Z_][^:\n{}]*|:\s*[\w.~]+(?:\s*,\s*[\w.~]+)*|[{}])/mg) {
            my $tok = $1;
            my @owners = @scopes && $scopes[-1][1] == $depth ? @{ $scopes[-1][0] } : ();
            if ($tok eq '{') {
                $depth++;
                next unless $pending;
                push @scopes, [$pending, $depth];
                for my $o (@$pending) { $conforms{$o}{$_} = 1 for @$inherits }
                ($pending, $inherits) = (undef, []);
            } elsif ($tok eq '}') {
                pop @scopes if @scopes && $scopes[-1][1] == $depth;
                $depth--;
            } elsif ($tok =~ /^(struct|enum|class|protocol|extension|actor)\s+(?:\w+\.)*(\w+)/) {
                my ($kw, $name) = ($1, $2);
                $type_members{$_}{$name} = 1 for $kw eq 'extension' ? () : @owners;
                $pending = [$name];
                $inherits = [];
                push @$pending, $1
                    if $kw eq 'extension' && substr($text, pos $text) =~ /^[^{]*?\bPointee\s*==\s*(\w+)/;
            } elsif ($tok =~ /^:\s*(.*)$/s) {
                push @$inherits, map { s/^~//r } split /\s*,\s*/, $1 if $pending && !@$inherits;
            } elsif ($tok =~ /^case\s+(.*)$/s) {
                my $list = $1;
                next if $list =~ /^(?:let|var)\b/;
                1 while $list =~ s/\([^()]*\)//g;
                while ($list =~ /(?:^|,)\s*`?(\w+)/g) { $type_members{$_}{$1} = 1 for @owners }
            } elsif ($tok =~ /(\w+)$/) {
                $type_members{$_}{$1} = 1 for @owners;
            }
        }
        $alias{$1} = $2 while $text =~ /\btypealias\s+(\w+)\s*(?:<[^>]*>)?\s*=\s*(\w+)/g;
    }
    # Argument labels of each func and init: "name" -> { "a:b:" }, with the defaulted
    # parameters optional.
    while ($text =~ /\b(?:func\s+(\w+)|(init)[?!]?)\s*(?:<[^>(]*>)?\s*\(/g) {
        my $name = $1 // $2;
        my $start = pos($text);
        my ($depth, $k) = (1, $start);
        while ($k < length $text && $depth > 0) {
            my $c = substr($text, $k++, 1);
            $depth++ if $c eq "(" || $c eq "[";
            $depth-- if $c eq ')' || $c eq ']';
        }
        my $params = substr($text, $start, $k - $start - 1);
        my @parts;
        my ($cur, $d, $prev) = ("", 0, "");
        for my $c (split //, $params) {
            $d++ if $c =~ /[(\[<]/;
            $d-- if $c =~ /[)\]]/ || ($c eq ">" && $prev ne "-");
            $prev = $c;
            if ($c eq ',' && $d == 0) { push @parts, $cur; $cur = '' } else { $cur .= $c }
        }
        push @parts, $cur if $cur =~ /\S/;
        my @p;
        for my $part (@parts) {
            next unless $part =~ /^\s*(?:\@\w+\s+)*(\w+)(?:\s+(\w+))?\s*:/;
            my $label = $1;
            push @p, [$label, $part =~ /=/ ? 1 : 0];
        }
        my $n = @p;
        my @opt = grep { $p[$_][1] } 0 .. $n - 1;
        @opt = @opt[0 .. 5] if @opt > 6;
        for my $mask (0 .. (1 << @opt) - 1) {
            my %drop = map { $opt[$_] => 1 } grep { $mask & (1 << $_) } 0 .. $#opt;
            my $sig = join '', map { "$p[$_][0]:" } grep { !$drop{$_} } 0 .. $n - 1;
            $labels{$name}{$sig} = 1;
        }
    }
}

# What a type declares (enum cases among it) counts as declared anywhere.
for my $t (keys %type_members) { $members{$_} = 1 for keys %{ $type_members{$t} } }

my (@broken, %reported);
sub missing {
    my ($f, $line, $kind, $name) = @_;
    # One report per name and line, though two checks may find it.
    push @broken, "$f:$line: missing $kind $name" unless $reported{"$f:$line:$name"}++;
}

# A path or name with placeholders as a regex: `$(ARCH)`, `$f`, `<arch>`, `*` and `XXXX`
# stand for any part of one name, `{a,b}` for either.
sub pattern_re {
    my ($path) = @_;
    my $re = '';
    for my $piece (split /(\$\([A-Za-z_]+\)|\$\{?[A-Za-z_0-9]+\}?|<[A-Za-z_-]+>|\*|XXXX|\{[^}]*\})/, $path) {
        next if $piece eq '';
        if ($piece =~ /^\{(.*,.*)\}$/) {
            $re .= '(?:' . join('|', map { quotemeta } split /,/, $1) . ')';
        } elsif ($piece =~ /^(?:\$|<|\*|XXXX)/) {
            $re .= '[^/]*';
        } else {
            $re .= quotemeta $piece;
        }
    }
    return $re;
}

# A path exists if it matches a file or folder from the root or from the citing file's
# folder, with or without its extension (`Tests/QuarryTests/FaultInjectionTests`).
sub path_exists {
    my ($path, $from) = @_;
    $path =~ s{/+$}{};
    my $re = pattern_re($path);
    (my $dir = $from) =~ s{/[^/]*$}{};
    my @prefixes = ('');
    push @prefixes, "$dir/" if $dir ne $from;
    for my $prefix (@prefixes) {
        my $full = qr{^\Q$prefix\E$re(?:\.[^/.]+)?$};
        return 1 if grep { $_ =~ $full } @all_paths;
    }
    return 0;
}

# A name from a Neighbours line: the end of a path (`Quarry/Platform.swift`, with or
# without its extension), a file name, a file stem, a folder or a type.
sub neighbour_exists {
    my ($name) = @_;
    (my $n = $name) =~ s{/+$}{};
    if ($n =~ m{/|[*<\$]}) {
        my $re = pattern_re($n);
        return scalar grep { m{(?:^|/)$re(?:\.[^/.]+)?$} } @all_paths;
    }
    return 1 if $basename{$n} || $stem{$n} || $types{$n};
    if ($n =~ /^(\w+)\.(\w+)$/ && $2 !~ /^$ext$/) {
        return ($types{$1} || $stem{$1}) && ($members{$2} || $types{$2});
    }
    return 0;
}

# Whether a type (or an alias of it, or a protocol it conforms to) declares a member.
sub type_has {
    my ($type, $member, $seen) = @_;
    $seen //= {};
    return 0 if $seen->{$type}++;
    return 1 if $type_members{$type}{$member};
    return 1 if $alias{$type} && type_has($alias{$type}, $member, $seen);
    for my $p (keys %{ $conforms{$type} // {} }) {
        return 1 if type_has($p, $member, $seen);
    }
    return 0;
}

# The labels of a cited function, "a:b:" or "" for a bare "()".
sub labels_match {
    my ($name, $labels) = @_;
    return 1 unless defined $labels && $labels ne '';
    return 1 unless $labels{$name};
    return $labels{$name}{$labels} ? 1 : 0;
}

# A backticked name; returns (kind, name) when it is missing, () otherwise.
sub check_symbol {
    my ($t) = @_;
    $t =~ s/^\s+|\s+$//g;
    return () if $t eq '';
    # A file stem such as `SlabCache+PerCPU`.
    if ($t =~ /^[A-Z]\w*\+\w+$/) {
        return $stem{$t} ? () : ('file', $t);
    }
    # A file name: ours must exist; outputs (.o, .elf, .swiftmodule, .txt, ...) are not
    # checked.
    if ($t =~ /^[\w+\-]+\.(\w+)$/ && $1 =~ /^(?:$ext|$other_ext)$/) {
        return () if $t =~ /\.(?:$other_ext)$/ || $allowed{$t};
        return $basename{$t} ? () : ('file', $t);
    }
    return () if $t =~ /\s/ && $t !~ /^[\w.]+\(/;
    my $labels;
    if ($t =~ /^([.\w<>, ]+?)\((.*)\)[?!]?$/s) {
        my ($head, $args) = ($1, $2);
        if ($args =~ /^(?:(?:\w+:)+|)$/) { $labels = $args }
        elsif ($args =~ /^\s*\w*\s*$/ || $args =~ /\w+:\s/) { $labels = '' }
        else { return () }
        $t = $head;
    }
    1 while $t =~ s/<[^<>]*>//g;    # generic arguments
    return () if $t =~ /\s/;
    return () unless $t =~ /^\.?[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$/;
    return () if $allowed{$t};
    my @parts = split /\./, $t;
    shift @parts if $parts[0] eq '';
    # A module-qualified name, as in a demangled symbol: `Quarry.SlabCache.freeSlow`.
    shift @parts if @parts > 2 && $modules{ $parts[0] } && $parts[1] =~ /^[A-Z]/
        && !type_has($parts[0], $parts[1]);
    my $first = $parts[0];
    my $display = defined $labels ? "$t($labels)" : $t;
    # C names: ours must be in the code.
    if ($first =~ /^(?:quarry_|QUARRY_)/) {
        return (grep { !$words{$_} } @parts) ? ("symbol", $display) : ();
    }
    return () if $allowed{$first} || $first =~ $foreign_prefix;
    if ($t =~ /^\./) {    # `.member`
        return $members{$first} || $types{$first} ? () : ('member', $display);
    }
    if (@parts == 1) {
        if (defined $labels) {    # `name(...)`: Swift, or a C function in the code
            return ('function', $display) unless $members{$first} || $types{$first} || $words{$first};
            return labels_match($first, $labels) ? () : ('function', $display);
        }
        # A bare lowerCamelCase name (`freeHeld`, `pageLock`): a name the code uses.
        if ($first =~ /^[a-z]+[A-Z]\w*$/) {
            return $members{$first} || $words{$first} ? () : ('member', $first);
        }
        # A bare CamelCase name: a type, a module, a target, or a file stem.
        return () unless $first =~ /^[A-Z]/ && $first =~ /[a-z]/;
        return $types{$first} || $stem{$first} ? () : ('type', $first);
    }
    # Dotted: `Type.member...` needs the type, and its first member declared in that type,
    # an extension of it or a protocol it conforms to (a one-letter type is a generic
    # parameter: any declaration counts). Later members, and those after a lowercase start
    # (a variable), only need to be declared somewhere.
    if ($first =~ /^[A-Z]./) {
        return ('type', $display) unless $types{$first} || $stem{$first};
        return ('member', $display)
            if $types{$first} && !$allowed{$parts[1]} && !type_has($first, $parts[1]);
    }
    for my $m (@parts[1 .. $#parts]) {
        next if $allowed{$m};
        return ('member', $display) unless $members{$m} || $types{$m};
    }
    return labels_match($parts[-1], $labels) ? () : ('function', $display);
}

for my $f (sort keys %comments) {
    next if $skip{$f};
    my $lines = $comments{$f};
    my $md = $style{$f} eq 'md';
    my $fence = 0;
    # An indented code block starts after a blank line that does not continue a list item.
    my ($icode, $blank, $listy) = (0, 1, 0);
    my ($open, $open_line) = (undef, 0);    # a backtick span continued on the next line
    for my $i (0 .. $#$lines) {
        my $ln = $i + 1;
        my $text = $lines->[$i];
        if ($md) {
            if ($text !~ /\S/) { $blank = 1; next }
            my $indented = $text =~ /^(?: {4}|\t)/;
            $icode = $indented && ($icode || ($blank && !$listy));
            $listy = $text =~ /^\s*(?:[-*+]|\d+\.)\s/ || ($listy && ($indented || !$blank));
            $blank = 0;
        }
        next if $text eq '';
        if ($md && $text =~ /^\s*(```|~~~)/) { $fence = !$fence; next }

        # Paths under the top-level folders.
        while ($text =~ m{(?<![\w./\-\$])($top/(?:[\w.*+\-/]|\$\([A-Za-z_]+\)|\$\{?\w+\}?|<[a-z_-]+>|\{[\w.,\-]*\})*)}g) {
            my $p = $1;
            $p =~ s/[.:,;]+$//;
            next if $p =~ m{^\.?build/};
            missing($f, $ln, 'path', $p) unless path_exists($p, $f);
        }
        # The end of a path (`QuarryX86/X86Platform.swift`, `runner/bench.c`): some path in
        # the tree ends so. Not <sys/mman.h>, /usr/include/..., URLs.
        while ($text =~ m{(?<![\w./\-\$:<~])((?:[\w+\-]+/)+[\w+\-*]+\.$ext)(?![\w/])}g) {
            my $p = $1;
            next if $p =~ m{^(?:$top)/};
            missing($f, $ln, 'path', $p) unless neighbour_exists($p);
        }
        # Bare file names (not part of a path).
        while ($text =~ m{(?<![\w./\-\$<*+])([A-Za-z_][\w+\-]*\.$ext)(?![\w/])}g) {
            my $n = $1;
            next if $allowed{$n};
            missing($f, $ln, 'file', $n) unless $basename{$n};
        }
        # Our C names, with or without backticks, in code blocks too (`QUARRY_STUB_*`: some
        # name starts so).
        while ($text =~ m{(?<![\w./\-])((?:quarry|QUARRY)_\w*)(\*?)}g) {
            my ($name, $star) = ($1, $2);
            next if substr($text, pos $text) =~ /^\.(\w+)/ && $basename{"$name.$1"};    # a file
            next if $star ? grep { /^\Q$name\E/ } keys %words : $words{$name};
            missing($f, $ln, 'symbol', $name . $star);
        }
        next if $md && ($fence || $icode);

        # `Type.member` written without backticks, when Type is one of ours.
        (my $plain = $text) =~ s/`[^`]*`/ /g;
        while ($plain =~ m{(?<![\w.`/\$])([A-Z]\w*)\.([a-z_]\w*)(?![\w`/])}g) {
            my ($type, $member) = ($1, $2);
            next unless $types{$type} && !$allowed{$type} && $member !~ /^(?:$ext|$other_ext)$/;
            missing($f, $ln, 'member', "$type.$member") unless type_has($type, $member);
        }

        # Backticked names; a span may continue on the next line.
        my $scan = $text;
        if (defined $open) {
            if ($scan =~ s/^([^`]*)`//) {
                my ($kind, $name) = check_symbol("$open $1");
                missing($f, $open_line, $kind, $name) if $kind;
                $open = undef;
            } else {
                $open .= " $scan";
                next;
            }
        }
        while ($scan =~ /`([^`]*)`/g) {
            my ($kind, $name) = check_symbol($1);
            missing($f, $ln, $kind, $name) if $kind;
        }
        (my $tail = $scan) =~ s/`[^`]*`//g;
        if ($tail =~ /`([^`]*)$/) { ($open, $open_line) = ($1, $ln) }
    }

    # Neighbours sentences: from "Neighbours:" to the first ". " outside parentheses.
    next if $md;
    for my $i (0 .. $#$lines) {
        next unless $lines->[$i] =~ /Neighbours:(.*)$/;
        my $chunk = $1;
        my ($sentence, $depth, $j) = ('', 0, $i);
        while (1) {
            for my $c (split //, $chunk) {
                $depth++ if $c eq '(';
                $depth-- if $c eq ')';
                $sentence .= $depth > 0 || $c eq ')' ? ($c eq "\n" ? ' ' : '') : $c;
            }
            last if $depth == 0 && $sentence =~ /\.\s*$/;
            last if $depth == 0 && $sentence =~ /\.\s+\S/;
            $j++;
            last if $j > $#$lines || $lines->[$j] !~ /\S/ || $j > $i + 8;
            $sentence .= ' ';
            $chunk = $lines->[$j];
            $chunk =~ s/^\s*\*?\s*//;
        }
        $sentence =~ s/\.\s+\S.*$//;
        $sentence =~ s/\.\s*$//;
        my $seg = qr/(?:[\w+\-*]|<[a-z_-]+>|\$\(\w+\))/;
        for my $item (split /,|;|\band\b/, $sentence) {
            for my $word ($item =~ m{((?:$seg+/)*[A-Za-z_*]$seg*(?:\.[\w*]+)*/?)}g) {
                next if $word =~ /^[a-z]/ && $word !~ m{/} && $word !~ /\.$ext$/;    # prose
                next if $word !~ /[a-z]/;          # GDT, TF, PASS
                next if $word =~ m{^\.?build/};
                next if $allowed{$word};
                missing($f, $i + 1, 'neighbour', $word) unless neighbour_exists($word);
            }
        }
    }
}

# The map: docs/design.md names every core file (`Name.swift`, backticked) so that a
# newcomer finds any concept's file from it in one step.
if (-f 'docs/design.md' && !$skip{'docs/design.md'}) {
    open(my $fh, '<', 'docs/design.md') or die "docs/design.md: $!";
    my $design = do { local $/; <$fh> };
    close $fh;
    for my $core (grep { m{^Sources/Quarry/.*\.swift$} } @files) {
        (my $name = $core) =~ s{.*/}{};
        missing('docs/design.md', 1, 'map-entry', $core) unless index($design, "`$name`") >= 0;
    }
}

print "$_\n" for @broken;
if (@broken) {
    printf "doc-references: %d broken reference%s\n", scalar @broken, @broken == 1 ? '' : 's';
    exit 1;
}
print "doc-references: every cited file and symbol exists\n";
exit 0;
